#!/usr/bin/env bash
# Proves that the package installs from source (non-editable `pip install .`) into a fresh virtualenv
# and works in a brand-new `django-admin startproject` site: check, migrate, and both models in the admin.
# Everything happens in a temp dir, outside the repo, so the installed copy (not the source tree) is used.
#
# Env: PYTHON (default python3), VL_KEEP_TMP=1 keeps the temp dir for inspection.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PYTHON="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
unset PYTHONPATH DJANGO_SETTINGS_MODULE VIRTUAL_ENV || true

WORK="$(mktemp -d "${TMPDIR:-/tmp}/vl-fresh-install.XXXXXX")"
cleanup() {
    local rc=$?
    if [ "${VL_KEEP_TMP:-}" = 1 ]; then
        echo "fresh_install: kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    if [ $rc -ne 0 ]; then
        echo "fresh_install: FAILED (exit $rc) — see the messages above" >&2
    fi
    exit $rc
}
trap cleanup EXIT

step() { printf '\n--- fresh_install: %s\n' "$*"; }
fail() {
    printf 'fresh_install: FAILED: %s\n' "$*" >&2
    exit 1
}

cd "$WORK"

step "virtualenv ($("$PYTHON" --version 2>&1)) + pip install $ROOT (non-editable)"
"$PYTHON" -m venv "$WORK/venv" || fail "could not create a virtualenv with $PYTHON"
VPY="$WORK/venv/bin/python"
# An in-tree build leaves build/ and *.egg-info in the repo: remove the ones this run created.
created_in_repo=()
for artefact in build django_verification_link.egg-info; do
    [ -e "$ROOT/$artefact" ] || created_in_repo+=("$ROOT/$artefact")
done
"$VPY" -m pip install -q "$ROOT" || fail "pip install . (non-editable) failed"
for artefact in "${created_in_repo[@]}"; do rm -rf "$artefact"; done
"$VPY" -m pip show -f django-verification-link >/dev/null || fail "django-verification-link is not installed"
SITE_PACKAGES="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

step "installed package is the one imported, and carries every source file"
INSTALLED="$("$VPY" -c 'import os, verification_link; print(os.path.dirname(os.path.realpath(verification_link.__file__)))')" \
    || fail "import verification_link failed in the fresh virtualenv"
case "$INSTALLED" in
    "$SITE_PACKAGES"/*) echo "verification_link imported from $INSTALLED" ;;
    *) fail "verification_link was imported from $INSTALLED, not from the venv's site-packages ($SITE_PACKAGES)" ;;
esac
# Every shipped file of the source package (code, migrations, templates, static, locale, py.typed)
# must be in the installed copy; catches package-data / packages.find mistakes.
missing="$(cd "$ROOT/verification_link" && find . -type f \
    \( -name '*.py' -o -name '*.html' -o -name '*.txt' -o -name '*.css' -o -name '*.js' -o -name '*.svg' \
    -o -name '*.png' -o -name '*.json' -o -name '*.po' -o -name '*.mo' -o -name 'py.typed' \) \
    -not -path '*/__pycache__/*' | sort | while read -r f; do [ -f "$INSTALLED/$f" ] || echo "  $f"; done)"
[ -z "$missing" ] || fail "files of the source package are missing from the installed package:
$missing"
echo "all source package files are installed"

step "django-admin startproject"
mkdir "$WORK/site"
"$WORK/venv/bin/django-admin" startproject vlsite "$WORK/site" || fail "django-admin startproject failed"
SITE="$WORK/site"
"$VPY" - "$SITE/vlsite/settings.py" "$SITE/vlsite/urls.py" <<'EOF' || fail "could not wire verification_link into the new site"
import sys

settings_path, urls_path = sys.argv[1:]

with open(settings_path) as f:
    settings = f.read()
marker = "INSTALLED_APPS = [\n"
assert marker in settings, "INSTALLED_APPS not found in the generated settings.py"
settings = settings.replace(marker, marker + '    "verification_link",\n', 1)
settings += '''
VERIFICATION_LINK = {
    "DEFAULT_PROVIDER": "ooto",
    "PROVIDERS": {
        "ooto": {
            "BACKEND": "verification_link.providers.ooto.OotoProvider",
            "APP_ID": "fresh-install-app-id",
            "APP_KEY": "fresh-install-app-key",
        },
    },
    "PUBLIC_BASE_URL": "https://www.example.com",
}
'''
with open(settings_path, "w") as f:
    f.write(settings)

with open(urls_path) as f:
    urls = f.read()
old_import = "from django.urls import path\n"
old_patterns = "urlpatterns = [\n"
assert old_import in urls and old_patterns in urls, "unexpected urls.py from startproject"
urls = urls.replace(old_import, "from django.urls import include, path\n", 1)
urls = urls.replace(old_patterns, old_patterns + '    path("verify/", include("verification_link.urls")),\n', 1)
with open(urls_path, "w") as f:
    f.write(urls)
print("added verification_link to INSTALLED_APPS, VERIFICATION_LINK, and verify/ URLs")
EOF

cd "$SITE"
manage() { "$VPY" manage.py "$@"; }

step "manage.py check (warnings fail too)"
manage check --fail-level WARNING || fail "manage.py check reported problems"

step "manage.py makemigrations --check --dry-run verification_link (installed migrations are complete)"
manage makemigrations --check --dry-run verification_link || fail "the installed package has model changes without migrations"

step "manage.py migrate"
manage migrate --noinput -v 1 || fail "manage.py migrate failed"
manage showmigrations verification_link | grep -q '\[X\]' || fail "no verification_link migration was applied"

step "createsuperuser"
DJANGO_SUPERUSER_PASSWORD='fresh-install-pw' manage createsuperuser --noinput --username admin --email admin@example.com \
    || fail "createsuperuser failed"

step "admin shows both models (Django test Client via manage.py shell -c)"
manage shell -c '
import os, sysconfig, sys
import django
import verification_link
from django.test import Client
from django.test.utils import setup_test_environment

purelib = os.path.realpath(sysconfig.get_paths()["purelib"])
where = os.path.realpath(verification_link.__file__)
if not where.startswith(purelib + os.sep):
    sys.exit(f"FAILED: verification_link imported from {where}, not from site-packages {purelib}")
print(f"Django {django.get_version()}, verification_link {verification_link.__version__} from {where}")

setup_test_environment()  # allows the test Client host "testserver"
client = Client()
if not client.login(username="admin", password="fresh-install-pw"):
    sys.exit("FAILED: could not log in to the admin as the new superuser")

response = client.get("/admin/")
if response.status_code != 200:
    sys.exit(f"FAILED: GET /admin/ answered {response.status_code}")
body = response.content.decode()
urls = ["/admin/verification_link/verificationsession/", "/admin/verification_link/verificationevent/"]
missing = [url for url in urls if f"href=\"{url}\"" not in body]
if missing:
    sys.exit(f"FAILED: /admin/ has no link to {missing}")
for url in urls:
    status = client.get(url).status_code
    if status != 200:
        sys.exit(f"FAILED: GET {url} answered {status}")
    print(f"GET {url} -> 200")
print("admin OK: both models are listed and their changelists answer 200")
' || fail "admin check failed"

printf '\nfresh_install: OK\n'

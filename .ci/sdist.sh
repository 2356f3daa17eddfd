#!/usr/bin/env bash
# The package as it is published: build the sdist and, from it, the wheel; check both (twine check
# --strict, check-wheel-contents, what each must carry); install from the sdist (not editable) into the
# Python given; remove the source package from an unpacked copy of the sdist and run the suite there,
# so every import, template, catalogue and static file comes from the installed package.
#
# Usage: .ci/sdist.sh PYTHON [PYTEST_ARGS...]
#   PYTHON needs build, twine and check-wheel-contents (tox -e sdist installs them); PYTEST_ARGS default
#   to the suite without the PostgreSQL, beat and browser tests.
# Env: VL_SDIST_DJANGO, the Django installed beside the package (default "Django>=6.0,<6.1": the Django
# 6.0 cell of the matrix); VL_KEEP_TMP=1 keeps the temp dir.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PY="${1:?usage: .ci/sdist.sh PYTHON [PYTEST_ARGS...]}"
shift
DJANGO="${VL_SDIST_DJANGO:-Django>=6.0,<6.1}"
PYTEST_ARGS=("$@")
[ ${#PYTEST_ARGS[@]} -gt 0 ] || PYTEST_ARGS=(-m "not postgres and not beat and not browser")
export PIP_DISABLE_PIP_VERSION_CHECK=1
unset PYTHONPATH DJANGO_SETTINGS_MODULE || true

WORK="$(mktemp -d "${TMPDIR:-/tmp}/vl-sdist.XXXXXX")"
cleanup() {
    local rc=$?
    if [ "${VL_KEEP_TMP:-}" = 1 ]; then echo "sdist: kept $WORK" >&2; else rm -rf "$WORK"; fi
    [ $rc -eq 0 ] || echo "sdist: FAILED (exit $rc)" >&2
    exit $rc
}
trap cleanup EXIT
step() { printf '\n--- sdist: %s\n' "$*"; }
fail() { echo "sdist: $*" >&2; exit 1; }
BIN="$(dirname "$PY")"

step "build (the wheel is built from the sdist)"
cd "$ROOT"
"$PY" -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 || { tail -n 30 "$WORK/build.log" >&2; fail "build failed"; }
SDIST="$(ls "$WORK"/dist/*.tar.gz)"
WHEEL="$(ls "$WORK"/dist/*.whl)"
ls -l "$WORK/dist"

step "twine check --strict, check-wheel-contents"
"$PY" -m twine check --strict "$SDIST" "$WHEEL"
"$BIN/check-wheel-contents" "$WHEEL"

step "what each carries"
SDIST_FILES="$(tar tzf "$SDIST" | sed 's#^[^/]*/##')"
for needed in LICENSE CHANGELOG.rst README.rst tox.ini manage.py pyproject.toml docs/conf.py docs/index.rst \
    tests/conftest.py tests/settings.py tests/urls.py tests/browser/conftest.py example_project/manage.py \
    verification_link/py.typed verification_link/locale/ar/LC_MESSAGES/django.mo; do
    grep -qx "$needed" <<<"$SDIST_FILES" || fail "the sdist lacks $needed"
done
WHEEL_FILES="$("$PY" -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' "$WHEEL")"
grep -qE '^django_verification_link-[^/]+\.dist-info/licenses/LICENSE$' <<<"$WHEEL_FILES" || fail "the wheel lacks LICENSE"
grep -q '^License-Expression: MIT$' <<<"$("$PY" -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); print(z.read([n for n in z.namelist() if n.endswith(".dist-info/METADATA")][0]).decode())' "$WHEEL")" \
    || fail "the wheel's METADATA has no License-Expression: MIT"
for needed in verification_link/py.typed verification_link/locale/fr/LC_MESSAGES/django.mo \
    verification_link/templates/verification_link/base.html verification_link/sandbox/templates/verification_link/sandbox/base.html; do
    grep -qx "$needed" <<<"$WHEEL_FILES" || fail "the wheel lacks $needed"
done
if grep -qE '^(tests|example_project|benchmarks|docs)/' <<<"$WHEEL_FILES"; then fail "the wheel carries more than the package"; fi
echo "sdist: $(wc -l <<<"$SDIST_FILES") files; wheel: $(wc -l <<<"$WHEEL_FILES") files"

step "install from the sdist ($DJANGO)"
"$PY" -m pip install -q "$SDIST[test]" "$DJANGO" >"$WORK/pip.log" 2>&1 || { grep -v '^WARNING: Location' "$WORK/pip.log" | tail -n 30 >&2; fail "pip install from the sdist failed"; }
mkdir "$WORK/src"
tar xzf "$SDIST" -C "$WORK/src"
SRC="$(ls -d "$WORK"/src/*/)"
rm -rf "$SRC/verification_link"
cd "$SRC"
VL_SDIST_DJANGO="$DJANGO" "$PY" - <<'PY'
import os, sys, django, verification_link
from packaging.requirements import Requirement
wanted = Requirement(os.environ["VL_SDIST_DJANGO"])
assert wanted.specifier.contains(django.get_version()), f"Django {django.get_version()} is not {wanted}"
where = verification_link.__file__
assert "site-packages" in where, f"imported from {where}, not the installed package"
print(f"Python {sys.version.split()[0]}, Django {django.get_version()}, verification_link {verification_link.__version__} from {where}")
PY

step "the suite, from the unpacked sdist: pytest ${PYTEST_ARGS[*]}"
"$PY" -m pytest "${PYTEST_ARGS[@]}"

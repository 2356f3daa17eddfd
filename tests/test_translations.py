"""The shipped catalogues (Arabic, French, Spanish) translate every message of ours — the user
pages, the sandbox and the admin, and the example site's own pages — and their compiled ``.mo``
files are what the ``.po`` files say.

The sources are extracted afresh (``makemessages`` on a copy of the package, so the tree is not
touched): a string added without its translations fails here. Needs GNU gettext (``apt-get install
gettext``); skipped without it, except in CI.
"""

import gettext
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import verification_link

ROOT = Path(__file__).resolve().parents[1]
#: The package imported (in the sdist stage: the one installed from the sdist, the source tree removed).
PACKAGE = Path(verification_link.__file__).resolve().parent
#: Each translated source tree, and the fewest messages it has (a catalogue emptied by mistake fails).
CATALOGUES = {"package": (PACKAGE, 300), "example": (ROOT / "example_project" / "demo", 30)}
LANGUAGES = ("ar", "fr", "es")
HAVE_GETTEXT = all(shutil.which(tool) for tool in ("xgettext", "msgfmt", "msgmerge"))

pytestmark = pytest.mark.skipif(
    not HAVE_GETTEXT and os.environ.get("CI") != "true", reason="needs GNU gettext (apt-get install gettext)"
)


@pytest.fixture(scope="module", params=sorted(CATALOGUES))
def refreshed(request, tmp_path_factory):
    """A copy of a source tree whose catalogues ``makemessages`` has merged with today's sources,
    and the fewest messages it must have."""
    source, fewest = CATALOGUES[request.param]
    copy = tmp_path_factory.mktemp("catalogues") / source.name
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__", "*.mo"))
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    command = [sys.executable, "-m", "django", "makemessages", "--no-obsolete", "--no-location"]
    command += [arg for language in LANGUAGES for arg in ("-l", language)]
    subprocess.run(command, cwd=copy, env=env, check=True, capture_output=True, timeout=300)
    return copy, fewest


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_is_translated(refreshed, language):
    refreshed, fewest = refreshed
    po = refreshed / "locale" / language / "LC_MESSAGES" / "django.po"
    checked = subprocess.run(
        ["msgfmt", "--check", "--statistics", "-o", os.devnull, str(po)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr
    statistics = checked.stderr.strip().splitlines()[-1]  # after any warning
    assert "untranslated" not in statistics and "fuzzy" not in statistics, f"{language}: {statistics}"
    assert int(statistics.split()[0]) > fewest, statistics


@pytest.mark.parametrize("catalogue", sorted(CATALOGUES))
@pytest.mark.parametrize("language", LANGUAGES)
def test_the_compiled_catalogue_is_the_source(tmp_path, catalogue, language):
    source = CATALOGUES[catalogue][0] / "locale" / language / "LC_MESSAGES"
    compiled = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "-o", str(compiled), str(source / "django.po")], check=True, timeout=60)
    with open(source / "django.mo", "rb") as shipped, open(compiled, "rb") as fresh:
        assert gettext.GNUTranslations(shipped)._catalog == gettext.GNUTranslations(fresh)._catalog


@pytest.mark.django_db
def test_a_page_of_ours_reads_in_arabic_right_to_left(client, django_user_model):
    from django.utils import translation

    user = django_user_model.objects.create_user("layla", password="pw")
    client.force_login(user)
    with translation.override("ar"):
        html = client.get("/verify/start/").content.decode()
    assert '<html lang="ar" dir="rtl">' in html
    assert "Verify your identity" not in html  # the heading is translated

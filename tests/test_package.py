"""Packaging metadata is consistent: requires-python, classifiers, tox envlist, py.typed."""

import configparser
import re
import sys
from pathlib import Path

import verification_link

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = None

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(verification_link.__file__).resolve().parent
REPOSITORY = "https://github.com/django-verification-link/django-verification-link"


def pyproject():
    import pytest

    if tomllib is None:
        pytest.skip("tomllib needs Python 3.11+")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_distribution_and_import_names():
    project = pyproject()
    assert project["name"] == "django-verification-link"
    assert verification_link.__version__
    assert (PACKAGE / "py.typed").exists()


def test_runtime_dependencies_match_the_design():
    names = {re.split(r"[<>=\[ ]", dep)[0].lower() for dep in pyproject()["dependencies"]}
    assert names == {"django", "djangorestframework", "requests", "celery", "qrcode"}
    assert {"redis", "test"} <= set(pyproject()["optional-dependencies"])


def test_python_versions_agree_across_requires_python_classifiers_and_tox():
    project = pyproject()
    assert project["requires-python"] == ">=3.10"
    classified = {
        c.rsplit(" ", 1)[1] for c in project["classifiers"] if re.match(r"Programming Language :: Python :: 3\.\d+$", c)
    }
    assert classified == {"3.10", "3.11", "3.12", "3.13"}
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    envlist = tox["tox"]["envlist"]
    in_tox = {f"3.{m}" for m in re.findall(r"py3(\d+)", expand_envlist(envlist))}
    assert in_tox == classified


def test_django_versions_agree_across_classifiers_and_tox():
    classified = {c.rsplit(" ", 1)[1] for c in pyproject()["classifiers"] if re.match(r"Framework :: Django :: \d", c)}
    tox = (ROOT / "tox.ini").read_text()
    assert {"4.2", "5.2"} <= classified
    assert any(v.startswith("6.") for v in classified)
    assert "django42" in tox and "django52" in tox and re.search(r"django6", tox)


def expand_envlist(envlist):
    """Expand tox's ``py{310,311}-django{42,52}`` brace syntax into plain names."""
    out = []
    for item in re.split(r"[\s,]+(?![^{]*})", envlist.strip()):
        parts = [item]
        while any("{" in p for p in parts):
            expanded = []
            for p in parts:
                m = re.search(r"\{([^}]*)\}", p)
                if not m:
                    expanded.append(p)
                    continue
                for choice in m.group(1).split(","):
                    expanded.append(p[: m.start()] + choice.strip() + p[m.end() :])
            parts = expanded
        out.extend(parts)
    return " ".join(out)


def test_the_settings_page_documents_every_setting_and_check():
    """The README is the short version: the settings reference is docs/settings.rst (kept generated
    by tests/test_settings_docs.py), which the README links."""
    from verification_link import conf

    page = (ROOT / "docs" / "settings.rst").read_text(encoding="utf-8")
    for key in conf.DEFAULTS:
        assert f"``{key}``" in page, key
    sources = "\n".join(path.read_text() for path in (PACKAGE).rglob("*.py"))
    for check_id in set(re.findall(r"verification_link\.[EW]\d{3}", sources)):
        assert check_id in page, check_id
    assert f"<{REPOSITORY}/blob/main/docs/settings.rst>" in (ROOT / "README.rst").read_text(encoding="utf-8")


def test_readme_opens_with_the_demo_and_test_commands_and_is_valid_rst():
    import docutils.core

    readme = (ROOT / "README.rst").read_text()
    commands = [line.strip() for line in readme.splitlines() if line.startswith("    python3 -m venv")]
    assert commands[:2] == [
        'python3 -m venv .venv && .venv/bin/pip install -e ".[example]" '
        "&& .venv/bin/python example_project/manage.py demo",
        'python3 -m venv .venv && .venv/bin/pip install -e ".[test]" && .venv/bin/python -m pytest',
    ]
    docutils.core.publish_doctree(readme, settings_overrides={"halt_level": 2})


def test_the_readme_links_every_page_of_the_docs_site_and_every_link_resolves():
    readme = (ROOT / "README.rst").read_text(encoding="utf-8")
    # Absolute links: the README is also the package's page on PyPI, where relative ones lead nowhere.
    assert not re.findall(r"<(?!https://)[^<>\s]+\.rst>`__", readme), "a relative link in the README"
    targets = set(re.findall(rf"<{re.escape(REPOSITORY)}/blob/main/([^<>\s]+\.rst)>`__", readme))
    pages = {path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").rglob("*.rst") if "_build" not in path.parts}
    assert pages, "no docs pages found: the test would pass for nothing"
    assert pages - targets == set(), f"docs pages the README does not link: {sorted(pages - targets)}"
    assert all((ROOT / target).is_file() for target in targets), sorted(t for t in targets if not (ROOT / t).is_file())


def test_the_license_is_declared_the_spdx_way_and_shipped():
    project = pyproject()
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert not any(c.startswith("License ::") for c in project["classifiers"])  # PEP 639: the SPDX field says it


def test_the_sdist_carries_what_the_tests_need():
    """MANIFEST.in names them (.ci/sdist.sh then runs the suite from the built sdist)."""
    lines = [line.split() for line in (ROOT / "MANIFEST.in").read_text().splitlines() if line and line[0] != "#"]
    grafted = {words[1] for words in lines if words[0] == "graft"}
    included = {name for words in lines if words[0] == "include" for name in words[1:]}
    assert {"tests", "docs", "example_project", "benchmarks"} <= grafted
    assert {"LICENSE", "CHANGELOG.rst", "tox.ini", "manage.py"} <= included


def test_unsupported_django_releases_are_excluded():
    (django,) = [dep for dep in pyproject()["dependencies"] if dep.startswith("django>")]
    assert django == "django>=4.2,!=5.0.*,!=5.1.*"

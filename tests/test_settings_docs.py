"""docs/settings.rst is the settings table, rendered: every key with its default and check id, and
the page stays as ``docs/_ext/settings_table.py`` renders it (regenerate: run that script)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import docutils.core
import pytest

from verification_link.providers.keys import COMMON_KEYS
from verification_link.sandbox.conf import SANDBOX_KEYS
from verification_link.settings_table import TOP_LEVEL, alias_keys

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "settings.rst"


def renderer():
    spec = importlib.util.spec_from_file_location("settings_table_docs", ROOT / "docs" / "_ext" / "settings_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def entry(text, name):
    """The paragraph of ``name`` in a section of the page: its doc and its facts line."""
    match = re.search(rf"^``{re.escape(name)}``\n((?:    .*\n|\n)+)", text, re.M)
    assert match, f"{name} is not documented"
    return match.group(1)


def section(title):
    text = PAGE.read_text(encoding="utf-8")
    start = text.index(f"\n{title}\n")
    end = text.find("\n-----", start + len(title) + 10)
    return text[start : end if end != -1 else len(text)]


def test_the_page_is_the_rendered_table():
    module = renderer()
    assert module.current() == module.render(), (
        "docs/settings.rst is stale: run .venv/bin/python docs/_ext/settings_table.py"
    )


@pytest.mark.parametrize(
    ("title", "table"),
    [("Top-level keys", TOP_LEVEL), ("Keys of every alias", COMMON_KEYS), ("Sandbox keys", SANDBOX_KEYS)],
)
def test_every_key_is_documented_with_its_default_and_check_id(title, table):
    text = section(title)
    for name, setting in table.items():
        paragraph = entry(text, name)
        assert setting.check_id in paragraph, name
        assert ("Required" if setting.required else "Default ") in paragraph, name


def test_every_backend_key_is_documented():
    module = renderer()
    text = PAGE.read_text(encoding="utf-8")
    for backend in module.backends():
        path = f"{backend.__module__}.{backend.__name__}"
        start = text.index(f"``BACKEND``: ``{path}``")
        end = text.find("``BACKEND``: ``", start + 10)
        part = text[start : end if end != -1 else len(text)]
        for name in vars(backend).get("config_keys") or {}:
            assert alias_keys(backend)[name].check_id in entry(part, name), (path, name)


def test_every_check_id_of_the_package_is_on_the_page():
    text = PAGE.read_text(encoding="utf-8")
    sources = "\n".join(path.read_text() for path in (ROOT / "verification_link").rglob("*.py"))
    for check_id in set(re.findall(r"verification_link\.[EW]\d{3}", sources)):
        assert f"``{check_id}``" in text, check_id


def test_the_page_is_valid_restructuredtext():
    docutils.core.publish_doctree(
        PAGE.read_text(encoding="utf-8"), settings_overrides={"halt_level": 2, "report_level": 2}
    )

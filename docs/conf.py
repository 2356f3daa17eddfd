"""Sphinx configuration of the documentation site (furo theme, autodoc of the public API).

Build from the repository root, as CI does::

    pip install -e ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html

Django is set up before autodoc imports anything (the services import the models). The settings
are the test suite's (``tests.settings``) unless ``DJANGO_SETTINGS_MODULE`` names others; nothing
is read from or written to a database while the docs build. No intersphinx: the build machine
has no internet, and a build that fetches inventories would fail or warn there.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from docutils.parsers.rst import Directive, directives

ROOT = Path(__file__).resolve().parent.parent
# The package and ``tests.settings`` from this checkout, installed or not; the site's own
# extensions from ``docs/_ext``.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

import verification_link  # noqa: E402

project = "django-verification-link"
author = "django-verification-link contributors"
copyright = "django-verification-link contributors"
release = verification_link.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "openapi",  # docs/_ext/openapi.py: ``.. verification-link-openapi::`` on the REST API page
    "settings_table",  # docs/_ext/settings_table.py: warns while docs/settings.rst is stale
]

# The testing helpers import the ``test`` extra's factory-boy and responses; a docs-only
# environment without them still renders their docstrings (the names are mocked, never run).
autodoc_mock_imports = [name for name in ("factory", "responses") if importlib.util.find_spec(name) is None]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True

# Docstrings of this project use ``double backticks`` for code; a single-backtick reference that
# names nothing Sphinx knows would otherwise be a warning.
default_role = "code"

templates_path: list[str] = []
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
language = "en"

html_theme = "furo"
html_title = f"django-verification-link {release}"
html_static_path: list[str] = []
html_show_sourcelink = False

# Types named in signatures that Sphinx cannot resolve to a page of this site (Django's, the
# standard library's: there is no intersphinx) are left as plain text instead of warnings.
nitpicky = False


class SidebarContents(Directive):
    """``.. contents::`` made silent on this site. The pages keep the directive for readers of the
    ``.rst`` files (GitHub renders it); furo shows every page's contents in its right-hand sidebar
    and renders the directive itself as a red error box in the page."""

    optional_arguments = 1
    final_argument_whitespace = True
    option_spec = {
        "depth": directives.nonnegative_int,
        "local": directives.flag,
        "backlinks": directives.unchanged,
        "class": directives.class_option,
    }

    def run(self) -> list:
        return []


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("contents", SidebarContents, override=True)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

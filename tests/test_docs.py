"""The documentation site covers the public API, and every page of it is reachable.

Cheap checks of the ``docs/`` sources (no Sphinx build; CI runs ``sphinx-build -W`` as a stage of its
own): every public name of the services, the testing helpers and the tasks, and every signal, has a
directive of its own; every ``.rst`` page is reached from ``index`` through toctrees; every
provider module has its page and its row in the providers' tables.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from django.dispatch import Signal

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

DIRECTIVE = re.compile(
    r"^\.\. (?:py:)?(?:auto)?(?:function|class|data|exception|attribute|method|task)::\s+(\S+)", re.M
)
MODULE = re.compile(r"^\.\. (?:py:)?(?:module|currentmodule)::\s+(\S+)", re.M)
TOCTREE = re.compile(r"^\.\. toctree::[^\n]*\n((?:[ \t]+[^\n]*\n|[ \t]*\n)*)", re.M)


def pages() -> dict[str, Path]:
    """Every page of the site by its Sphinx name (``providers/ooto``), build output left out."""
    return {
        path.relative_to(DOCS).with_suffix("").as_posix(): path
        for path in DOCS.rglob("*.rst")
        if "_build" not in path.relative_to(DOCS).parts
    }


def documented_names() -> set[str]:
    """Full dotted names of every object directive (``.. autofunction::``, ``.. data::`` …) in the
    docs, resolved against the ``.. module::``/``.. currentmodule::`` in force where they stand."""
    names = set()
    for path in pages().values():
        text = path.read_text()
        markers = sorted(
            [(m.start(), "module", m.group(1)) for m in MODULE.finditer(text)]
            + [(m.start(), "object", m.group(1)) for m in DIRECTIVE.finditer(text)]
        )
        module = ""
        for _, kind, value in markers:
            if kind == "module":
                module = value
            elif value.startswith("verification_link."):
                names.add(value)
            elif module:
                names.add(f"{module}.{value}")
    return names


def toctree_children(name: str, path: Path) -> list[str]:
    """The pages a page's toctrees list, as Sphinx resolves them (relative to the page's folder,
    or to the root with a leading ``/``); options and captions left out."""
    folder = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
    children = []
    for block in TOCTREE.findall(path.read_text()):
        for line in block.splitlines():
            entry = line.strip()
            if not entry or entry.startswith(":"):
                continue
            target = re.sub(r"^.*<(.+)>$", r"\1", entry)  # "Title <page>"
            children.append(target.lstrip("/") if target.startswith("/") else folder + target)
    return children


def test_every_public_service_has_a_directive():
    from verification_link import services

    documented = documented_names()
    missing = [name for name in services.__all__ if f"verification_link.services.{name}" not in documented]
    assert not missing, f"verification_link.services names with no directive in docs/: {missing}"


def test_every_signal_is_documented_on_the_signals_page_and_nothing_else_is_claimed():
    from verification_link import signals

    actual = {name for name, value in vars(signals).items() if isinstance(value, Signal)}
    assert actual, "no signals found: the test would pass for nothing"
    on_page = {name.rsplit(".", 1)[1] for name in documented_names() if name.startswith("verification_link.signals.")}
    assert actual - on_page == set(), f"signals not documented: {sorted(actual - on_page)}"
    assert on_page - actual == set(), f"docs name signals that do not exist: {sorted(on_page - actual)}"
    text = (DOCS / "signals.rst").read_text()
    for name in actual:
        # Its arguments and how often it is sent, in the words the page uses for every signal.
        section = text.split(f".. data:: {name}", 1)[1].split("\n.. data::", 1)[0]
        assert f"``{name}(sender, session" in section, name
        assert "**How often.**" in section and "**When.**" in section, name


def test_documented_service_and_testing_names_exist():
    """A directive for a name the code no longer has would render as an autodoc warning or, for
    ``.. data::``, as a stale promise."""
    import importlib

    for full in documented_names():
        module_name, _, attr = full.rpartition(".")
        if not module_name.startswith(("verification_link.services", "verification_link.testing")):
            continue
        module = importlib.import_module(module_name)
        assert hasattr(module, attr), f"docs document {full}, which does not exist"


def test_every_testing_helper_and_task_is_documented():
    pytest.importorskip("factory")
    from celery.local import Proxy

    from verification_link import tasks, testing

    documented = documented_names()
    missing = [name for name in testing.__all__ if f"verification_link.testing.{name}" not in documented]
    assert not missing, f"verification_link.testing names with no directive: {missing}"
    task_names = [name for name, value in vars(tasks).items() if isinstance(value, Proxy)]
    assert task_names, "no tasks found: the test would pass for nothing"
    missing = [name for name in [*task_names, "beat_schedule"] if f"verification_link.tasks.{name}" not in documented]
    assert not missing, f"tasks with no directive on docs/tasks.rst: {missing}"


def test_every_page_is_reachable_from_the_index_through_toctrees():
    all_pages = pages()
    assert "index" in all_pages
    reached, todo = set(), ["index"]
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        for child in toctree_children(name, all_pages[name]):
            assert child in all_pages, f"{name}.rst lists {child!r} in a toctree, and there is no such page"
            todo.append(child)
    unreached = sorted(set(all_pages) - reached)
    assert not unreached, f"pages in no toctree reached from index: {unreached}"


def test_every_provider_module_has_its_page_and_its_row():
    import importlib
    import pkgutil

    from verification_link import providers
    from verification_link.providers.base import BaseProvider

    found = {}
    for info in pkgutil.iter_modules(providers.__path__):
        module = importlib.import_module(f"verification_link.providers.{info.name}")
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseProvider)
                and value is not BaseProvider
                and value.__module__ == module.__name__
            ):
                found[info.name] = value
    assert {"ooto", "valify"} <= set(found), found
    index = (DOCS / "providers" / "index.rst").read_text()
    listed = toctree_children("providers/index", DOCS / "providers" / "index.rst")
    for module_name, cls in found.items():
        assert (DOCS / "providers" / f"{module_name}.rst").exists(), f"no docs/providers/{module_name}.rst"
        assert f"providers/{module_name}" in listed, f"{module_name} is not in the providers' toctree"
        assert f"``{module_name}.{cls.__name__}``" in index, f"{cls.__name__} has no row in the settings table"
        # The row's cells after the backend's: the first is "required credentials".
        row = index.split(f"``{module_name}.{cls.__name__}``", 1)[1].split("   * -", 1)[0]
        credentials = row.split("\n     - ")[1]
        for key in cls.required_settings:
            assert f"``{key}``" in credentials, f"{cls.__name__}'s required {key} is not in its row"


def test_conf_uses_furo_and_never_fetches():
    conf = (DOCS / "conf.py").read_text()
    assert re.search(r'^html_theme = "furo"$', conf, re.M)
    assert "sphinx.ext.intersphinx" not in conf  # no internet on the build machine
    assert re.search(r"^os\.environ\.setdefault\(\"DJANGO_SETTINGS_MODULE\"", conf, re.M)
    assert "django.setup()" in conf


def test_pages_link_each_other_by_doc_role_not_by_file_name():
    """A link to ``page.rst`` works on GitHub and is a 404 on the built site (``page.html``)."""
    file_links = {
        name: re.findall(r"<([^<>\s]+\.rst)>`_", path.read_text())
        for name, path in pages().items()
        if re.search(r"<[^<>\s]+\.rst>`_", path.read_text())
    }
    assert not file_links, f"use :doc:`title <page>` instead of these links: {file_links}"

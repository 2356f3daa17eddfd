"""The REST API page's schema: docs/_ext/openapi.py renders every operation and component, and a
Sphinx build with it passes ``-W``."""

import importlib.util
import re
from pathlib import Path

import pytest

EXTENSION = Path(__file__).resolve().parent.parent / "docs" / "_ext" / "openapi.py"
pytest.importorskip("sphinx")


@pytest.fixture(scope="module")
def openapi():
    spec = importlib.util.spec_from_file_location("vl_docs_openapi", EXTENSION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_operation_and_component_is_rendered(openapi):
    schema = openapi.generate_schema()
    text = "\n".join(openapi.Renderer(schema, "verification-link").render(with_yaml=False))
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            assert f"\n{method.upper()} {path}\n" in text
            assert f"``{operation['operationId']}``" in text
            for code in operation["responses"]:
                assert f"``{code}``" in text
    for name in (
        "VerificationSession",
        "VerificationSessionCreate",
        "VerificationSessionError",
        "VerificationSessionPage",
        "VerificationSessionStatusEnum",
    ):
        assert f".. _openapi-{name.lower()}:\n\n{name}\n{'^' * len(name)}\n" in text
    # Each field of a component, with its type; each enum value.
    assert re.search(
        r"``status``\n\s+- :ref:`VerificationSessionStatusEnum <openapi-verificationsessionstatusenum>`", text
    )
    assert "``CAPTCHA_OK``\n     - Captcha passed" in text
    assert ":ref:`VerificationSessionError <openapi-verificationsessionerror>` (``application/json``)" in text


def test_a_sphinx_build_with_it_has_no_warning(tmp_path):
    from sphinx.cmd.build import build_main

    source = tmp_path / "src"
    source.mkdir()
    (source / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(EXTENSION.parent)!r})\nextensions = ['openapi']\n"
    )
    (source / "index.rst").write_text(
        "API\n===\n\nSchema\n------\n\n.. verification-link-openapi::\n   :yaml:\n", encoding="utf-8"
    )
    out = tmp_path / "out"
    assert build_main(["-W", "--keep-going", "-q", "-b", "html", str(source), str(out)]) == 0
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "verification_link_sessions_list" in html and 'id="openapi-verificationsessionstatusenum"' in html
    assert 'class="highlight-yaml' in html  # the raw YAML, appended

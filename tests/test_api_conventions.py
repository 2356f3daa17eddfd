"""The API within a site's conventions: our schema names, the site's pagination and exception handler."""

import json

import pytest
import yaml
from django.core.management import call_command
from django.test import override_settings
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination, LimitOffsetPagination, PageNumberPagination
from rest_framework.test import APIClient
from rest_framework.views import APIView

from verification_link.api.exceptions import ConflictError, chain_exception_handler, exception_handler
from verification_link.api.pagination import MAX_PAGE_SIZE
from verification_link.models import VerificationSession
from verification_link.testing import VerificationSessionFactory

pytestmark = pytest.mark.django_db
API = "/verify/api/sessions/"
OUR_PATHS = ("/verify/api/",)
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def site_rest_framework(settings, **changes):
    """The tests' REST_FRAMEWORK with ``changes`` (a key set to None is removed)."""
    merged = {**settings.REST_FRAMEWORK, **changes}
    return {key: value for key, value in merged.items() if value is not None}


def generated_schema(tmp_path, *extra):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target), *extra)
    return yaml.safe_load(target.read_text())


def refs(node):
    """Every component name a part of the schema refers to."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value.rsplit("/", 1)[-1]
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


# -- the schema --------------------------------------------------------------------------------------


def test_the_schema_validates_without_a_warning_and_every_name_is_ours(tmp_path):
    schema = generated_schema(tmp_path)
    operations = [
        op
        for path, item in schema["paths"].items()
        if path.startswith(OUR_PATHS)
        for method, op in item.items()
        if method in METHODS
    ]
    assert len(operations) == 6
    assert sorted(op["operationId"] for op in operations) == [
        "verification_link_sessions_cancel",
        "verification_link_sessions_create",
        "verification_link_sessions_list",
        "verification_link_sessions_refresh",
        "verification_link_sessions_retrieve",
        "verification_link_sessions_retry",
    ]
    assert all(op["tags"] == ["verification-link"] for op in operations)
    components = schema["components"]["schemas"]
    # Every component our operations reach, directly or through other components, is prefixed.
    reached, todo = set(), list(refs(operations))
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(refs(components[name]))
    assert reached >= {
        "VerificationSession",
        "VerificationSessionCreate",
        "VerificationSessionError",
        "VerificationSessionPage",
        "VerificationSessionStatusEnum",
        "VerificationSessionNextStepEnum",
        "VerificationSessionDecisionEnum",
        "VerificationSessionProviderEnum",
        "VerificationSessionScopeEnum",
        "VerificationSessionCheckSummary",
    }
    assert all(name.startswith("VerificationSession") for name in reached), sorted(reached)
    assert not {"Session", "Error", "StatusEnum", "BlankEnum", "NullEnum"} & set(components)


def test_the_enums_say_what_the_api_answers():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    assert schema["VerificationSessionStatusEnum"]["enum"] == VerificationSession.Status.values
    assert "" in schema["VerificationSessionNextStepEnum"]["enum"]
    decision = schema["VerificationSessionDecisionEnum"]
    assert decision["enum"] == ["", "approved", "rejected", "review", None] and decision["nullable"] is True


def test_the_names_hold_under_the_sites_own_spectacular_settings():
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.settings import patched_settings

    with patched_settings({"COMPONENT_SPLIT_REQUEST": True, "OAS_VERSION": "3.1.0"}):
        schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    assert all(name.startswith("VerificationSession") for name in components), sorted(components)
    assert "VerificationSessionCreateRequest" in components
    assert components["VerificationSessionDecisionEnum"]["type"] == ["string", "null"]


def test_the_schema_follows_the_sites_pagination_class(settings, tmp_path):
    with override_settings(
        REST_FRAMEWORK=site_rest_framework(
            settings, DEFAULT_PAGINATION_CLASS="rest_framework.pagination.LimitOffsetPagination"
        )
    ):
        schema = generated_schema(tmp_path)
    listing = schema["paths"]["/verify/api/sessions/"]["get"]
    assert {"limit", "offset"} <= {p["name"] for p in listing["parameters"]}
    assert "page" not in {p["name"] for p in listing["parameters"]}


# -- the site's pagination ----------------------------------------------------------------------------


class SitePages(PageNumberPagination):
    """A site's own class: its page size and its query parameter for it."""

    page_size = 2
    page_size_query_param = "size"


def test_the_sites_page_size(api, user, settings):
    VerificationSessionFactory.create_batch(7, user=user)
    with override_settings(REST_FRAMEWORK=site_rest_framework(settings, PAGE_SIZE=3)):
        first = api.get(API).json()
        assert (first["count"], len(first["results"])) == (7, 3)
        assert len(api.get(first["next"]).json()["results"]) == 3
        assert api.get(API, {"page": ""}).status_code == 404  # still a whole number or nothing


def test_the_sites_pagination_class(api, user, settings):
    sessions = VerificationSessionFactory.create_batch(5, user=user)
    newest_first = [str(s.pk) for s in sorted(sessions, key=lambda s: s.created_at, reverse=True)]
    limit_offset = "rest_framework.pagination.LimitOffsetPagination"
    with override_settings(REST_FRAMEWORK=site_rest_framework(settings, DEFAULT_PAGINATION_CLASS=limit_offset)):
        body = api.get(API).json()  # PAGE_SIZE 20 of the tests' settings is the default limit
        assert [s["id"] for s in body["results"]] == newest_first and body["next"] is None
        page = api.get(API, {"limit": 2, "offset": 2}).json()
        assert [s["id"] for s in page["results"]] == newest_first[2:4] and "offset=4" in page["next"]
    with override_settings(
        REST_FRAMEWORK=site_rest_framework(settings, DEFAULT_PAGINATION_CLASS=f"{__name__}.SitePages")
    ):
        assert len(api.get(API).json()["results"]) == 2  # the class's own page size over PAGE_SIZE
        assert len(api.get(API, {"size": 4}).json()["results"]) == 4


def test_a_cursor_pagination_of_the_site(api, user, settings):
    sessions = VerificationSessionFactory.create_batch(3, user=user)
    newest_first = [str(s.pk) for s in sorted(sessions, key=lambda s: s.created_at, reverse=True)]
    cursor = "rest_framework.pagination.CursorPagination"
    with override_settings(REST_FRAMEWORK=site_rest_framework(settings, DEFAULT_PAGINATION_CLASS=cursor, PAGE_SIZE=2)):
        first = api.get(API).json()
        second = api.get(first["next"]).json()
    assert [s["id"] for s in first["results"] + second["results"]] == newest_first


def test_never_the_whole_table(api, user, settings):
    """No site class: page numbers, as before; no page size: 20, not every session at once."""
    VerificationSessionFactory.create_batch(21, user=user)
    for changes in ({"DEFAULT_PAGINATION_CLASS": None, "PAGE_SIZE": None}, {"PAGE_SIZE": None}):
        with override_settings(REST_FRAMEWORK=site_rest_framework(settings, **changes)):
            body = api.get(API).json()
        assert (body["count"], len(body["results"])) == (21, 20), changes


class SiteLimits(LimitOffsetPagination):
    """A site's own limit and offset, with its own cap."""

    max_limit = 3


class SiteCursor(CursorPagination):
    """A site's cursors, with a query parameter for the page size and no cap."""

    page_size_query_param = "size"


def test_a_page_the_client_asks_for_is_capped(api, user, settings):
    """The site's class sets no cap: ``MAX_PAGE_SIZE``, however large the limit asked for."""
    VerificationSessionFactory.create_batch(MAX_PAGE_SIZE + 5, user=user)
    cases = {
        "rest_framework.pagination.LimitOffsetPagination": {"limit": 100000},
        f"{__name__}.SitePages": {"size": 100000},
        f"{__name__}.SiteCursor": {"size": 100000},
    }
    for site_class, asked in cases.items():
        with override_settings(REST_FRAMEWORK=site_rest_framework(settings, DEFAULT_PAGINATION_CLASS=site_class)):
            body = api.get(API, asked).json()
        assert len(body["results"]) == MAX_PAGE_SIZE, site_class
        assert body["next"], site_class


def test_the_sites_own_cap_and_a_default_above_ours(api, user, settings):
    VerificationSessionFactory.create_batch(MAX_PAGE_SIZE + 5, user=user)
    with override_settings(
        REST_FRAMEWORK=site_rest_framework(settings, DEFAULT_PAGINATION_CLASS=f"{__name__}.SiteLimits")
    ):
        assert len(api.get(API, {"limit": 100000}).json()["results"]) == 3
    limit_offset = "rest_framework.pagination.LimitOffsetPagination"
    with override_settings(
        REST_FRAMEWORK=site_rest_framework(settings, DEFAULT_PAGINATION_CLASS=limit_offset, PAGE_SIZE=MAX_PAGE_SIZE + 2)
    ):
        # Asking for more never gives less than not asking: the site's larger default is the cap.
        assert len(api.get(API).json()["results"]) == MAX_PAGE_SIZE + 2
        assert len(api.get(API, {"limit": 100000}).json()["results"]) == MAX_PAGE_SIZE + 2


# -- the site's exception handler ----------------------------------------------------------------------

SITE_HANDLER_CALLS = []


def site_handler(exc, context):
    """A site's own handler: its own shape, for everything it is given."""
    SITE_HANDLER_CALLS.append(type(exc).__name__)
    from rest_framework.views import exception_handler as drf_handler

    response = drf_handler(exc, context)
    if response is not None:
        response.data = {"error": {"type": type(exc).__name__}}
    return response


@pytest.fixture
def with_site_handler(settings):
    SITE_HANDLER_CALLS.clear()
    # Through pytest-django's ``settings`` (not a nested override_settings): undone in order with
    # the other changes of the test (vl_settings).
    settings.REST_FRAMEWORK = site_rest_framework(settings, EXCEPTION_HANDLER=f"{__name__}.site_handler")
    return SITE_HANDLER_CALLS


def test_the_sites_handler_answers_what_is_not_ours(with_site_handler, api, django_user_model):
    anonymous = APIClient().get(API)
    assert anonymous.status_code in (401, 403)
    assert anonymous.json() == {"error": {"type": "NotAuthenticated"}}
    theirs = VerificationSessionFactory(user=django_user_model.objects.create_user("bob"))
    assert api.get(f"{API}{theirs.pk}/").json() == {"error": {"type": "NotFound"}}
    assert api.get(API, {"status": "MAYBE"}).json() == {"error": {"type": "ValidationError"}}
    assert with_site_handler == ["NotAuthenticated", "NotFound", "ValidationError"]


def test_our_errors_keep_their_shape_under_the_sites_handler(with_site_handler, api, fake_ooto):
    fake_ooto.fail_next(503)
    unavailable = api.post(API, {}, format="json")
    assert unavailable.status_code == 503 and int(unavailable["Retry-After"]) == 30
    assert unavailable.json()["code"] == "provider_unavailable" and set(unavailable.json()) == {"code", "detail"}
    session_id = api.post(API, {}, format="json").json()["id"]
    VerificationSession.objects.filter(pk=session_id).update(status="DONE")
    conflict = api.post(f"{API}{session_id}/cancel/")
    assert conflict.status_code == 409 and conflict.json()["code"] == "invalid_transition"
    assert with_site_handler == []


def test_too_many_attempts_is_ours_under_the_sites_handler(with_site_handler, api, fake_ooto, vl_settings):
    vl_settings(MAX_ATTEMPTS=1)
    assert api.post(API, {"scopes": ["liveness"]}, format="json").status_code == 201
    response = api.post(API, {"scopes": ["deepfake"]}, format="json")
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert response.json()["code"] == "too_many_attempts"
    assert with_site_handler == []


def test_our_handler_as_the_sites_handler(api, settings, fake_ooto):
    ours = "verification_link.api.exceptions.exception_handler"
    with override_settings(REST_FRAMEWORK=site_rest_framework(settings, EXCEPTION_HANDLER=ours)):
        anonymous = APIClient().get(API)
        assert set(anonymous.json()) == {"code", "detail"}
        fake_ooto.fail_next(503)
        assert api.post(API, {}, format="json").json()["code"] == "provider_unavailable"
    # The site's other views answer as DRF's handler does; our own errors are ours anywhere.
    elsewhere = {"view": APIView(), "args": (), "kwargs": {}, "request": None}
    assert exception_handler(NotFound(), elsewhere).data == {"detail": "Not found."}
    conflict = exception_handler(ConflictError(), elsewhere)
    assert (conflict.status_code, conflict.data["code"]) == (409, "invalid_transition")


def test_a_site_handler_chained_behind_ours(settings):
    SITE_HANDLER_CALLS.clear()
    chained = chain_exception_handler(f"{__name__}.site_handler")
    context = {"view": APIView(), "args": (), "kwargs": {}, "request": None}
    assert chained(ConflictError(), context).data["code"] == "invalid_transition"
    assert chained(NotFound(), context).data == {"error": {"type": "NotFound"}}
    assert SITE_HANDLER_CALLS == ["NotFound"]


def test_the_handler_is_read_per_request(api, settings):
    """``api_settings`` reloads on ``setting_changed``: our views never keep a handler from before."""
    theirs = f"{API}00000000-0000-0000-0000-000000000000/"
    assert set(api.get(theirs).json()) == {"code", "detail"}
    with override_settings(REST_FRAMEWORK=site_rest_framework(settings, EXCEPTION_HANDLER=f"{__name__}.site_handler")):
        assert api.get(theirs).json() == {"error": {"type": "NotFound"}}
    assert json.loads(api.get(theirs).content)["code"] == "not_found"


def test_the_example_projects_schema_validates_too(tmp_path):
    """The example project serves the schema (``/api/schema/``) under its own settings."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    env["VL_DEMO_DB"] = str(tmp_path / "demo.sqlite3")
    target = tmp_path / "example.yaml"
    command = [sys.executable, str(root / "example_project" / "manage.py"), "spectacular", "--validate"]
    done = subprocess.run(
        [*command, "--fail-on-warn", "--file", str(target)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    schema = yaml.safe_load(target.read_text())
    assert {op["operationId"] for item in schema["paths"].values() for op in item.values()} >= {
        "verification_link_sessions_list",
        "verification_link_sessions_create",
    }
    assert all(name.startswith("VerificationSession") for name in schema["components"]["schemas"])

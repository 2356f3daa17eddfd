"""The REST API: every endpoint, permission, validation error and error mapping; constant queries."""

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from verification_link.models import VerificationSession
from verification_link.testing import VerificationSessionFactory

pytestmark = pytest.mark.django_db
API = "/verify/api/sessions/"


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def api(user):
    return client_for(user)


@pytest.fixture
def other(django_user_model):
    return django_user_model.objects.create_user("bob", "bob@example.com", "pw")


@pytest.fixture
def staff_viewer(django_user_model):
    viewer = django_user_model.objects.create_user("sam", "sam@example.com", "pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_verificationsession"))
    return viewer


# -- create --------------------------------------------------------------------------------------


def test_create_answers_201_with_the_hand_off(api, fake_ooto, user):
    response = api.post(API, {"scopes": ["liveness"], "metadata": {"order": 7}, "next_url": "/done/"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    session = VerificationSession.objects.get()
    assert body["id"] == str(session.pk)
    assert (body["status"], body["next_step"], body["url"]) == ("CREATED", "", session.url)
    assert body["qr_url"] == f"http://testserver/verify/s/{session.pk}/qr.svg"
    assert body["expires_at"] and body["decision"] is None and body["result"] is None
    assert (session.user, session.scopes, session.metadata, session.next_url) == (
        user,
        ["liveness"],
        {"order": 7},
        "/done/",
    )
    assert session.events.get(kind="created")


def test_create_with_defaults_and_another_alias(api, fake_ooto):
    assert api.post(API, {}, format="json").status_code == 201
    assert VerificationSession.objects.get().scopes == ["liveness", "deepfake"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scopes": ["palmistry"]}, "scopes"),
        ({"scopes": "liveness"}, "scopes"),
        ({"scopes": []}, "scopes"),
        ({"provider": "nope"}, "provider"),
        ({"provider": "ooto_eu"}, "provider"),  # configured, but not one of USER_PROVIDERS
        ({"metadata": ["x"]}, "metadata"),
        ({"metadata": {"x": "y" * 5000}}, "metadata"),
        ({"next_url": "https://evil.example/"}, "next_url"),
        ({"next_url": "//evil.example/"}, "next_url"),
    ],
)
def test_create_validation_errors_list_the_fields(api, fake_ooto, body, field):
    response = api.post(API, body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not VerificationSession.objects.exists()
    assert not fake_ooto.calls()


def test_create_refuses_a_body_that_is_not_json(api, fake_ooto):
    response = api.post(API, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert not VerificationSession.objects.exists()


@pytest.mark.parametrize(
    ("status", "answer", "code"),
    [
        (503, 503, "provider_unavailable"),
        (500, 503, "provider_unavailable"),
        (422, 502, "provider_rejected"),
        (401, 502, "provider_auth"),
        (429, 503, "provider_unavailable"),
    ],
)
def test_provider_errors_map_to_clear_json(api, fake_ooto, status, answer, code):
    fake_ooto.fail_next(status)
    response = api.post(API, {}, format="json")
    assert response.status_code == answer
    assert response.json()["code"] == code and response.json()["detail"]
    if answer == 503:
        assert int(response["Retry-After"]) == 30
    assert not VerificationSession.objects.exists()


# -- list and retrieve ------------------------------------------------------------------------------


def test_list_is_the_callers_own_newest_first_and_filters_by_status(api, user, other):
    mine = [VerificationSessionFactory(user=user), VerificationSessionFactory(user=user, done=True)]
    VerificationSessionFactory(user=other)
    body = api.get(API).json()
    assert [s["id"] for s in body["results"]] == [str(mine[1].pk), str(mine[0].pk)]
    assert body["count"] == 2
    done = api.get(API, {"status": "DONE"}).json()
    assert [s["id"] for s in done["results"]] == [str(mine[1].pk)]
    assert api.get(API, {"status": "MAYBE"}).status_code == 400


def test_list_is_paginated(api, user):
    VerificationSessionFactory.create_batch(25, user=user)
    first = api.get(API).json()
    assert len(first["results"]) == 20 and first["next"]
    assert len(api.get(first["next"]).json()["results"]) == 5


def test_final_sessions_expose_decision_and_a_summary_never_biometrics(api, user):
    session = VerificationSessionFactory(user=user, done=True)
    body = api.get(f"{API}{session.pk}/").json()
    assert body["decision"] == "approved"
    assert body["result"] == {"liveness": {"passed": True, "score": 0.96}, "deepfake": {"passed": True, "score": 0.96}}
    assert body["url"] is None and body["qr_url"] is None
    text = str(body)
    for secret in ("demography", "landmarks", "box", session.token, session.callback_secret, "events"):
        assert secret not in text


def test_query_counts_are_constant(user):
    def queries(path):
        fresh = client_for(type(user).objects.get(pk=user.pk))  # as each real request loads its user
        with CaptureQueriesContext(connection) as ctx:
            assert fresh.get(path).status_code == 200
        return len(ctx.captured_queries)

    session = VerificationSessionFactory(user=user, done=True)
    few = (queries(API), queries(f"{API}{session.pk}/"))
    VerificationSessionFactory.create_batch(15, user=user, done=True)
    assert (queries(API), queries(f"{API}{session.pk}/")) == few


# -- permissions -------------------------------------------------------------------------------------


def test_anonymous_is_refused(client, fake_ooto):
    session = VerificationSessionFactory()
    for method, path in [
        ("get", API),
        ("post", API),
        ("get", f"{API}{session.pk}/"),
        ("post", f"{API}{session.pk}/refresh/"),
        ("post", f"{API}{session.pk}/cancel/"),
    ]:
        response = getattr(APIClient(), method)(path, {}, format="json")
        assert response.status_code in (401, 403), path
        assert set(response.json()) == {"code", "detail"}
    assert not fake_ooto.calls()


def test_token_authentication_works(user, fake_ooto):
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.post(API, {}, format="json").status_code == 201


def test_another_users_session_is_404_and_untouched(api, other, fake_ooto):
    theirs = VerificationSessionFactory(user=other, status="IN_PROGRESS")
    for method, path in [
        ("get", f"{API}{theirs.pk}/"),
        ("post", f"{API}{theirs.pk}/refresh/"),
        ("post", f"{API}{theirs.pk}/cancel/"),
    ]:
        assert getattr(api, method)(path).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == "IN_PROGRESS" and not theirs.events.exists()
    assert not fake_ooto.calls()


def test_staff_with_the_view_permission_see_all_but_cannot_act(staff_viewer, other, fake_ooto):
    theirs = VerificationSessionFactory(user=other, status="IN_PROGRESS")
    client = client_for(staff_viewer)
    body = client.get(f"{API}{theirs.pk}/").json()
    assert body["id"] == str(theirs.pk)
    assert body["url"] is None  # the link is the owner's alone
    assert [s["id"] for s in client.get(API).json()["results"]] == [str(theirs.pk)]
    assert client.post(f"{API}{theirs.pk}/cancel/").status_code == 404
    staff_viewer.user_permissions.add(Permission.objects.get(codename="change_verificationsession"))
    staff = client_for(type(staff_viewer).objects.get(pk=staff_viewer.pk))
    assert staff.post(f"{API}{theirs.pk}/cancel/").json()["status"] == "CANCELED"


def test_malformed_ids_are_404(api):
    for path in (f"{API}not-a-uuid/", f"{API}{'0' * 32}/", f"{API}12345678-1234-1234-1234-1234567890ab/refresh/"):
        response = api.get(path) if not path.endswith("refresh/") else api.post(path)
        assert response.status_code == 404


# -- refresh and cancel --------------------------------------------------------------------------------


def test_refresh_applies_the_provider_answer(api, fake_ooto, user, signal_log, django_capture_on_commit_callbacks):
    session_id = api.post(API, {}, format="json").json()["id"]
    session = VerificationSession.objects.get(pk=session_id)
    fake_ooto.complete(session)
    with django_capture_on_commit_callbacks(execute=True):
        body = api.post(f"{API}{session_id}/refresh/").json()
    assert (body["status"], body["decision"]) == ("DONE", "approved")
    assert [k["source"] for k in signal_log.of("verification_finished")] == ["api"]


def test_refresh_with_the_provider_down(api, fake_ooto):
    session_id = api.post(API, {}, format="json").json()["id"]
    fake_ooto.fail_next(502)
    response = api.post(f"{API}{session_id}/refresh/")
    assert response.status_code == 503 and response.json()["code"] == "provider_unavailable"


def test_cancel_then_conflict(api, fake_ooto):
    session_id = api.post(API, {}, format="json").json()["id"]
    body = api.post(f"{API}{session_id}/cancel/").json()
    assert body["status"] == "CANCELED" and body["url"] is None
    again = api.post(f"{API}{session_id}/cancel/")
    assert again.status_code == 200  # cancelling a canceled session is a no-op
    session = VerificationSession.objects.get(pk=session_id)
    session.status = "DONE"
    session.save()
    conflict = api.post(f"{API}{session_id}/cancel/")
    assert conflict.status_code == 409 and conflict.json()["code"] == "invalid_transition"


def test_throttled_under_its_named_scope(api, fake_ooto, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"verification_link": "2/minute"}}
    from django.core.cache import cache

    cache.clear()
    codes = [api.get(API).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert api.get(API).json()["code"] == "throttled"


def test_the_openapi_schema_describes_every_endpoint():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    paths = schema["paths"]
    assert set(paths) >= {
        "/verify/api/sessions/",
        "/verify/api/sessions/{id}/",
        "/verify/api/sessions/{id}/refresh/",
        "/verify/api/sessions/{id}/cancel/",
    }
    create = paths["/verify/api/sessions/"]["post"]
    assert {"201", "400", "502", "503"} <= set(create["responses"])
    assert "SessionCreate" in str(create["requestBody"])
    assert "409" in paths["/verify/api/sessions/{id}/cancel/"]["post"]["responses"]
    retry = paths["/verify/api/sessions/{id}/retry/"]["post"]["responses"]
    assert {"200", "201", "409", "429"} <= set(retry)
    # Found by schemathesis: a first attempt's ``previous`` is null, which the schema must allow.
    assert schema["components"]["schemas"]["VerificationSession"]["properties"]["previous"]["nullable"] is True


def test_what_the_fuzzer_found_stays_fixed(api, fake_ooto, user):
    """Found by schemathesis: each of these answered outside the schema."""
    assert api.get(API, {"status": ""}).status_code == 400
    assert api.get(API, {"page": ""}).status_code == 404
    assert api.get(API, {"page": "x"}).json()["code"] == "not_found"
    for odd in ("0", "null", "0.5", "%C2%84"):
        response = api.get(f"{API}{odd}/")
        assert response.status_code == 404 and response["Content-Type"] == "application/json", odd
    form = api.post(API, "scopes=liveness", content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415 and not VerificationSession.objects.exists()
    body = api.post(API, {"metadata": {"a": "x\u0000y"}}, format="json")
    assert body.status_code == 201
    assert VerificationSession.objects.get().metadata == {"a": "x\ufffdy"}
    assert body.json()["next_step"] == ""

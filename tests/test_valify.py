"""Valify: the create-link wire format, error mapping, authenticated webhooks, several accounts."""

import json
import re
import time
from datetime import timedelta

import pytest
import requests
import responses
from django.core.checks import Tags, run_checks
from django.test import override_settings
from django.utils import timezone, translation
from django.utils.dateparse import parse_datetime

from verification_link import services
from verification_link.exceptions import InvalidRequest, ProviderAuthError, ProviderRejected, ProviderUnavailable
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.providers import get_provider
from verification_link.webhooks import WebhookRefused, WebhookVerifier

from .inbound_base import InboundEndpointContract

pytestmark = pytest.mark.django_db
CREATE = "https://verify.valifysolutions.com/api/link/v1/request/"


def valify_result(passed=True):
    return {
        "ocr": {"national_id": "29901011234567", "full_name": "Ann Example"},
        "face_match": {"match": passed, "score": 0.93 if passed else 0.2},
        "liveness": {"passed": True, "score": 0.97},
        "phone_otp": {"verified": True},
        "images": {"front": "aGVsbG8=", "selfie": "d29ybGQ="},
    }


@pytest.fixture
def valify_api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        counter = iter(range(1, 1000))

        def create(request):
            n = next(counter)
            body = {
                "session_token": f"00000000-0000-0000-0000-{n:012d}",
                "redirect_url": f"https://verify.valifysolutions.com/?token=00000000-0000-0000-0000-{n:012d}",
            }
            return 200, {}, json.dumps(body)

        mock.add_callback(responses.POST, re.compile(re.escape(CREATE) + r".*"), callback=create)
        mock.add_callback(
            responses.POST, re.compile(r"https://b\.valify\.example/api/link/v1/request/.*"), callback=create
        )
        yield mock


def start(user, provider="valify", **kwargs):
    return services.start_verification(user=user, provider=provider, **kwargs)


# -- create ------------------------------------------------------------------------------------------


def test_create_wire_format(valify_api, user):
    before = timezone.now()
    session = start(user, ttl=3600)
    call = valify_api.calls[0].request
    assert call.url == CREATE + "?lang=en"
    assert call.headers["X-Valify-Api-Key"] == "valify-key-SECRET"
    assert call.headers["Content-Type"] == "application/json"
    body = json.loads(call.body)
    assert set(body) == {"return_url", "reference_id", "expires_at"}
    assert body["return_url"] == f"https://www.example.com/verify/s/{session.pk}/return/"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["expires_at"])
    expires = parse_datetime(body["expires_at"])
    assert timedelta(seconds=3590) < expires - before <= timedelta(seconds=3601)
    assert body["reference_id"] == session.reference
    assert session.token == session.external_id == "00000000-0000-0000-0000-000000000001"
    assert session.url.endswith("?token=" + session.token)
    assert abs(session.expires_at - expires) < timedelta(milliseconds=1)
    assert session.next_poll_at is None  # not pollable


def test_reference_is_opaque_and_per_attempt(valify_api, user):
    first, second = start(user, reuse=False), start(user, reuse=False)
    assert first.reference != second.reference
    assert len(first.reference) >= 32
    assert str(user.pk) != first.reference and user.username not in first.reference


def test_flow_and_language_of_the_alias(valify_api, user, settings):
    providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
    providers["valify"] = {**providers["valify"], "FLOW": "7c9e6679-7425-40de-944b-e07fc1f90ae7"}
    settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}
    start(user)
    start(user, provider="valify_b")
    assert json.loads(valify_api.calls[0].request.body)["flow"] == "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    assert valify_api.calls[1].request.url.endswith("?lang=ar")
    assert valify_api.calls[1].request.headers["X-Valify-Api-Key"] == "valify-b-key-SECRET"


@pytest.mark.parametrize(
    ("answer", "url"),
    [
        (
            {"session_token": "tok-1", "redirect_url": "https://verify.valifysolutions.com/?token=tok-1"},
            "https://verify.valifysolutions.com/?token=tok-1",
        ),
        (
            {"session_token": "tok-1", "redirect_url ": "https://verify.valifysolutions.com/?token=tok-1&x=1"},
            "https://verify.valifysolutions.com/?token=tok-1&x=1",
        ),
        ({"session_token": "tok-1"}, "https://verify.valifysolutions.com/?token=tok-1"),
        (
            {"session_token": "tok-1", "redirect_url": "javascript:alert(1)"},
            "https://verify.valifysolutions.com/?token=tok-1",
        ),
    ],
)
def test_redirect_url_spellings(user, answer, url):
    with responses.RequestsMock() as mock:
        mock.post(re.compile(re.escape(CREATE) + r".*"), json=answer)
        assert start(user).url == url


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (400, {"message": "return_url is required"}, ProviderRejected, None),
        (401, {"message": "invalid key"}, ProviderAuthError, None),
        (403, None, ProviderAuthError, None),
        (404, {"message": "flow not found"}, ProviderRejected, None),
        (415, {"message": "unsupported media type"}, ProviderRejected, None),
        (422, {"message": "expires_at must be in the future", "error_code": 1001}, ProviderRejected, 1001),
        (500, {"message": "oops"}, ProviderUnavailable, None),
        (503, "<html>", ProviderUnavailable, None),
        (200, "not json", ProviderUnavailable, None),
        (200, {"redirect_url": "https://x/"}, ProviderUnavailable, None),
    ],
)
def test_error_mapping(user, status, body, error, code):
    with responses.RequestsMock() as mock:
        kwargs = {"json": body} if isinstance(body, dict) else {"body": body or ""}
        mock.post(re.compile(re.escape(CREATE) + r".*"), status=status, **kwargs)
        with pytest.raises(error) as info:
            start(user)
    assert type(info.value) is error
    assert info.value.code == code
    assert not VerificationSession.objects.exists()
    assert VerificationEvent.objects.get().kind == "create_failed"


def test_network_errors_are_unavailable(user):
    with responses.RequestsMock() as mock:
        mock.post(re.compile(re.escape(CREATE) + r".*"), body=requests.ConnectTimeout("slow"))
        with pytest.raises(ProviderUnavailable):
            start(user)


def test_valify_takes_no_scopes(valify_api, user):
    with pytest.raises(InvalidRequest):
        start(user, scopes=["liveness"])


def test_not_pollable_expires_locally_without_a_call(valify_api, user):
    session = start(user)
    assert services.refresh_session(session).status == "CREATED"
    VerificationSession.objects.filter(pk=session.pk).update(
        expires_at=timezone.now() - timedelta(hours=1), next_poll_at=timezone.now() - timedelta(hours=1)
    )
    assert services.run_poll_sweep().found == 0
    assert services.expire_sessions() == 1
    assert len(valify_api.calls) == 1  # the create only
    session.refresh_from_db()
    assert session.status == "EXPIRED"


# -- webhook authentication (the verifier on its own) ---------------------------------------------------


def verifier(**config):
    return WebhookVerifier("x", {"WEBHOOK_SECRETS": ["s3cret", "0ld"], **config})


BODY = b'{"status": "success"}'


@pytest.mark.parametrize(
    "config",
    [
        {"WEBHOOK_SIGNATURE_HEADER": "X-Sig"},
        {"WEBHOOK_SIGNATURE_HEADER": "X-Sig", "WEBHOOK_SIGNATURE_ENCODING": "base64"},
        {"WEBHOOK_SIGNATURE_HEADER": "X-Sig", "WEBHOOK_SIGNATURE_PREFIX": "sha256="},
        {"WEBHOOK_SIGNATURE_HEADER": "X-Sig", "WEBHOOK_TIMESTAMP_HEADER": "X-Ts"},
        {"WEBHOOK_AUTH": "header", "WEBHOOK_SECRET_HEADER": "X-Secret"},
        {"WEBHOOK_AUTH": "header", "WEBHOOK_SECRET_HEADER": "X-Secret", "WEBHOOK_TIMESTAMP_HEADER": "X-Ts"},
    ],
)
def test_each_scheme_accepts_good_and_refuses_wrong_tampered_and_missing(config):
    v = verifier(**config)
    good = v.sign(BODY)
    v.verify(good, BODY)
    v.verify(v.sign(BODY, secret="0ld"), BODY)  # rotation: the old secret still works
    with pytest.raises(WebhookRefused):
        v.verify(v.sign(BODY, secret="wrong"), BODY)
    if v.scheme == "hmac":
        with pytest.raises(WebhookRefused, match="does not match"):
            v.verify(good, BODY.replace(b"success", b"failed"))
    for missing in good:
        with pytest.raises(WebhookRefused, match="missing"):
            v.verify({k: val for k, val in good.items() if k != missing}, BODY)


# A margin either side of the 300 s tolerance: the stamp is whole seconds and the check reads a
# float clock a moment later, so ±301 flips on a slow machine.
@pytest.mark.parametrize("offset", [-330, 330, -86400, 10**9])
def test_stale_and_future_timestamps_are_refused(offset):
    v = verifier(WEBHOOK_SIGNATURE_HEADER="X-Sig", WEBHOOK_TIMESTAMP_HEADER="X-Ts")
    headers = v.sign(BODY, timestamp=int(time.time()) + offset)
    with pytest.raises(WebhookRefused, match="tolerance"):
        v.verify(headers, BODY)
    v.verify(v.sign(BODY, timestamp=int(time.time()) + (270 if offset > 0 else -270)), BODY)


def test_the_timestamp_is_signed_with_the_body():
    v = verifier(WEBHOOK_SIGNATURE_HEADER="X-Sig", WEBHOOK_TIMESTAMP_HEADER="X-Ts")
    headers = v.sign(BODY)
    headers["X-Ts"] = str(int(headers["X-Ts"]) - 1)  # still within tolerance, but not what was signed
    with pytest.raises(WebhookRefused, match="does not match"):
        v.verify(headers, BODY)


def test_any_of_several_signatures_matches():
    v = verifier(WEBHOOK_SIGNATURE_HEADER="X-Sig", WEBHOOK_SIGNATURE_PREFIX="v1,")
    good = v.sign(BODY)["X-Sig"]
    v.verify({"X-Sig": f"v1,bogus {good}"}, BODY)


def test_path_scheme():
    v = verifier(WEBHOOK_AUTH="path")
    v.verify({}, BODY, path_secret="s3cret")
    v.verify({}, BODY, path_secret="0ld")
    for bad in (None, "", "s3cre", "wrong"):
        with pytest.raises(WebhookRefused):
            v.verify({}, BODY, path_secret=bad)
    with pytest.raises(WebhookRefused, match="unexpected"):
        verifier().verify(verifier().sign(BODY), BODY, path_secret="s3cret")


def test_no_secret_refuses_everything_with_403():
    v = WebhookVerifier("x", {"WEBHOOK_SECRETS": []})
    with pytest.raises(WebhookRefused) as info:
        v.verify({"X-Signature": "anything"}, BODY)
    assert info.value.status_code == 403
    assert "s3cret" not in repr(verifier())


def test_a_system_check_warns_without_secrets(settings):
    providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
    providers["valify"] = {k: v for k, v in providers["valify"].items() if k != "WEBHOOK_SECRETS"}
    with override_settings(VERIFICATION_LINK={**settings.VERIFICATION_LINK, "PROVIDERS": providers}):
        messages = [m for m in run_checks(tags=[Tags.compatibility]) if m.id == "verification_link.W003"]
    assert len(messages) == 1
    assert 'VERIFICATION_LINK["PROVIDERS"]["valify"]["WEBHOOK_SECRETS"]' in messages[0].msg


# -- the webhook endpoint: the shared contract, and Valify's own cases ---------------------------------


class ValifyWebhookTests(InboundEndpointContract):
    kind = VerificationEvent.Kind.WEBHOOK
    alias = "valify"
    accepted_statuses = (200,)

    @pytest.fixture(autouse=True)
    def _api(self, valify_api, user):
        self.user = user

    def make_session(self):
        return start(self.user, provider=self.alias)

    def url(self, session):
        return f"/verify/webhook/{self.alias}/"

    def unknown_urls(self, session):
        return ["/verify/webhook/nope/", "/verify/webhook/ooto/"]

    def payload(self, session, status="success", result=None):
        return {
            "event": "verification.completed",
            "session_token": session.token,
            "reference_id": session.reference,
            "status": status,
            "result": valify_result() if result is None else result,
        }

    def headers_for(self, session, body):
        return get_provider(self.alias).webhook_verifier().sign(body)

    read_headers = ("Content-Type", "Content-Length", "X-Valify-Signature", "X-Valify-Timestamp")

    def use_string_secret(self, settings, secret):
        providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
        providers[self.alias] = {**providers[self.alias], "WEBHOOK_SECRETS": secret}
        settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}
        return True

    def signed_with(self, session, body, secret):
        verifier = WebhookVerifier(self.alias, {}, get_provider(self.alias).webhook_defaults)
        return verifier.sign(body, secret=secret)

    def done_with_note(self, session, note):
        result = valify_result()
        result["liveness"]["note"] = note
        return self.payload(session, result=result)


class TestValifyWebhook(ValifyWebhookTests):
    def test_refused_requests_are_recorded_and_change_nothing(self):
        session = self.make_session()
        body = json.dumps(self.payload(session)).encode()
        good = self.headers_for(session, body)
        v = get_provider("valify").webhook_verifier()
        cases = {
            "wrong secret": (body, v.sign(body, secret="nope")),
            "tampered body": (body.replace(b"success", b"failed"), good),
            "missing signature": (body, {"X-Valify-Timestamp": good["X-Valify-Timestamp"]}),
            "missing timestamp": (body, {"X-Valify-Signature": good["X-Valify-Signature"]}),
            "stale": (body, v.sign(body, timestamp=int(time.time()) - 3600)),
            "future": (body, v.sign(body, timestamp=int(time.time()) + 3600)),
            "other account's secret": (body, get_provider("valify_b").webhook_verifier().sign(body)),
        }
        before = self.state()
        for name, (raw, headers) in cases.items():
            response = self.send(session, raw, headers=headers)
            assert (response.status_code, response.json()) == (401, {"error": "unauthorized"}), name
        assert self.state() == before
        events = list(self.recorded())
        assert len(events) == len(cases)
        assert all(e.valid is False and e.body and e.error for e in events)
        assert all("SECRET" not in e.error for e in events)

    def test_both_secrets_of_a_rotation_are_accepted(self):
        for secret in ("whsec-new-SECRET", "whsec-old-SECRET"):
            session = self.make_session()
            body = json.dumps(self.payload(session)).encode()
            headers = get_provider("valify").webhook_verifier().sign(body, secret=secret)
            assert self.send(session, body, headers=headers).json() == {"status": "processed"}

    def test_no_secret_configured_refuses_with_403(self, settings):
        session = self.make_session()
        providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
        providers["valify"] = {**providers["valify"], "WEBHOOK_SECRETS": []}
        settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}
        body = json.dumps(self.payload(session)).encode()
        headers = WebhookVerifier(
            "valify", {"WEBHOOK_SECRETS": ["whsec-new-SECRET"]}, get_provider("valify").webhook_defaults
        ).sign(body)
        response = self.send(session, body, headers=headers)
        assert (response.status_code, response.json()) == (403, {"error": "forbidden"})
        session.refresh_from_db()
        assert session.status == "CREATED"

    @pytest.mark.parametrize("field", ["session_token", "token", "reference_id"])
    def test_the_session_is_found_by_any_handle(self, field):
        session = self.make_session()
        payload = {
            "status": "failed",
            field: session.reference if field == "reference_id" else session.token,
            "result": valify_result(passed=False),
        }
        assert self.send(session, payload).json() == {"status": "processed"}
        session.refresh_from_db()
        assert (session.status, session.decision) == ("FAILED", "rejected")

    def test_outcomes_map_through_the_table(self, settings):
        providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
        providers["valify"] = {**providers["valify"], "WEBHOOK_STATUS_MAP": {"ALL_GOOD": "DONE"}}
        settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}
        for raw, expected in [
            ("Success", "DONE"),
            ("rejected", "FAILED"),
            ("cancelled", "CANCELED"),
            ("expired", "EXPIRED"),
            ("all_good", "DONE"),
        ]:
            session = self.make_session()
            self.send(session, self.payload(session, status=raw))
            session.refresh_from_db()
            assert session.status == expected, raw

    def test_an_unknown_outcome_is_recorded_not_applied(self, signal_log):
        session = self.make_session()
        response = self.send(session, self.payload(session, status="pending_manual_check"))
        assert (response.status_code, response.json()) == (200, {"status": "unknown status"})
        session.refresh_from_db()
        assert session.status == "CREATED"
        event = self.recorded().get()
        assert event.valid is True and "pending_manual_check" in event.error and event.session_id == session.pk
        assert signal_log == []

    def test_an_unknown_session_is_recorded_and_ignored(self):
        session = self.make_session()
        payload = {**self.payload(session), "session_token": "someone-else", "reference_id": "unknown"}
        assert self.send(session, payload).json() == {"status": "unknown session"}
        session.refresh_from_db()
        assert session.status == "CREATED"

    def test_identity_numbers_and_images_are_not_stored_by_default(self, settings):
        session = self.make_session()
        self.send(session, self.payload(session))
        session.refresh_from_db()
        assert session.result["face_match"] == {"match": True, "score": 0.93}
        stored = json.dumps(session.result)
        assert "29901011234567" not in stored and "aGVsbG8=" not in stored and "images" not in session.result
        assert session.decision == "approved"
        providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
        providers["valify"] = {**providers["valify"], "STORE_SENSITIVE": True}
        settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}
        kept = self.make_session()
        self.send(kept, self.payload(kept))
        kept.refresh_from_db()
        assert kept.result["ocr"]["national_id"] == "29901011234567"

    def test_two_accounts_are_isolated(self):
        mine = self.make_session()
        theirs = start(self.user, provider="valify_b")
        # B's webhook, properly signed by B, naming A's session: not found under B.
        body = json.dumps(self.payload(mine)).encode()
        headers = get_provider("valify_b").webhook_verifier().sign(body)
        response = self.send(mine, body, url="/verify/webhook/valify_b/", headers=headers)
        assert response.json() == {"status": "unknown session"}
        mine.refresh_from_db()
        assert mine.status == "CREATED"
        # Each account's own webhook works.
        body = json.dumps(self.payload(theirs)).encode()
        headers = get_provider("valify_b").webhook_verifier().sign(body)
        assert self.send(theirs, body, url="/verify/webhook/valify_b/", headers=headers).json() == {
            "status": "processed"
        }

    def test_a_webhook_applies_with_source_webhook(self, signal_log, django_capture_on_commit_callbacks):
        session = self.make_session()
        with django_capture_on_commit_callbacks(execute=True):
            self.send(session, self.payload(session))
        assert [k["source"] for k in signal_log.of("verification_finished")] == ["webhook"]


class TestValifyWebhookWithSecretPath(ValifyWebhookTests):
    """The same contract with the secret in the URL path."""

    @pytest.fixture(autouse=True)
    def _path_scheme(self, settings):
        providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
        providers["valify"] = {**providers["valify"], "WEBHOOK_AUTH": "path", "WEBHOOK_TIMESTAMP_HEADER": None}
        settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers}

    def url(self, session):
        return "/verify/webhook/valify/whsec-old-SECRET/"

    def url_with_secret(self, session, secret):
        return f"/verify/webhook/valify/{secret}/"

    def signed_with(self, session, body, secret):
        return {}

    def headers_for(self, session, body):
        return {}

    def test_a_wrong_path_secret_is_refused(self):
        session = self.make_session()
        response = self.send(session, self.payload(session), url="/verify/webhook/valify/guess/")
        assert response.status_code == 401
        assert self.send(session, self.payload(session), url="/verify/webhook/valify/").status_code == 401
        session.refresh_from_db()
        assert session.status == "CREATED"


def test_kept_identity_data_is_hidden_from_staff_and_purged_at_retention(valify_api, user, settings, django_user_model):
    from django.contrib.auth.models import Permission
    from django.test import Client

    providers = dict(settings.VERIFICATION_LINK["PROVIDERS"])
    providers["valify"] = {**providers["valify"], "STORE_SENSITIVE": True}
    settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": providers, "RETENTION_DAYS": 1}
    session = start(user)
    body = json.dumps({"session_token": session.token, "status": "success", "result": valify_result()}).encode()
    headers = get_provider("valify").webhook_verifier().sign(body)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    Client().post("/verify/webhook/valify/", data=body, content_type="application/json", **extra)
    session.refresh_from_db()
    assert session.result["ocr"]["national_id"] == "29901011234567"

    reviewer = django_user_model.objects.create_user("rita", password="pw", is_staff=True)
    reviewer.user_permissions.add(Permission.objects.get(codename="view_verificationsession"))
    staff = Client()
    staff.force_login(reviewer)
    page = staff.get(f"/admin/verification_link/verificationsession/{session.pk}/change/").content.decode()
    assert "29901011234567" not in page and "aGVsbG8=" not in page
    assert "Ann Example" in page  # the rest of the OCR stays readable

    VerificationSession.objects.filter(pk=session.pk).update(finished_at=timezone.now() - timedelta(days=2))
    assert services.purge_expired_data() == 1
    session.refresh_from_db()
    assert "national_id" not in json.dumps(session.result) and "images" not in session.result
    assert session.result["face_match"]["match"] is True


def test_a_refused_webhook_logs_which_check_failed_never_the_secret(valify_api, user, caplog, client):
    import logging

    caplog.set_level(logging.INFO)
    session = start(user)
    body = json.dumps({"session_token": session.token, "status": "success"}).encode()
    headers = get_provider("valify").webhook_verifier().sign(body)
    headers["X-Valify-Signature"] = "0" * 64
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    assert (
        client.post("/verify/webhook/valify/", data=body, content_type="application/json", **extra).status_code == 401
    )
    assert "signature in X-Valify-Signature does not match the body" in caplog.text
    assert "whsec" not in caplog.text and session.token not in caplog.text


# -- what of a webhook body is kept -------------------------------------------------------------------------


def test_a_stored_body_loses_identity_numbers_and_images_at_any_depth(settings):
    provider = get_provider("valify")
    payload = {"status": "success", "result": valify_result(), "extra": [{"documents": [{"id_number": "1", "ok": 1}]}]}
    kept = provider.storable_body(payload)
    assert kept == {
        "status": "success",
        "result": {
            "ocr": {"full_name": "Ann Example"},
            "face_match": {"match": True, "score": 0.93},
            "liveness": {"passed": True, "score": 0.97},
            "phone_otp": {"verified": True},
        },
        "extra": [{"documents": [{"ok": 1}]}],
    }
    assert payload["result"]["ocr"]["national_id"] == "29901011234567"  # the payload itself is left alone
    with_sensitive = dict(settings.VERIFICATION_LINK["PROVIDERS"])
    with_sensitive["valify"] = {**with_sensitive["valify"], "STORE_SENSITIVE": True, "SENSITIVE_FIELDS": ["x"]}
    settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "PROVIDERS": with_sensitive}
    assert get_provider("valify").storable_body(payload) == payload
    # Result parts a site never stores are not kept in the body either.
    settings.VERIFICATION_LINK = {**settings.VERIFICATION_LINK, "DISCARD_RESULT_KEYS": ["ocr", "images"]}
    kept = get_provider("valify").storable_body(payload)
    assert set(kept["result"]) == {"face_match", "liveness", "phone_otp"} and kept["extra"] == payload["extra"]


def test_the_walk_is_iterative():
    """Hostile JSON can nest deeper than the interpreter recurses: no walk of ours may recurse. Past
    the one depth limit (``jsonbody.MAX_DEPTH``, which parse_json enforces too) it is refused, never
    a RecursionError — and never returned with its identity numbers left in."""
    from verification_link.jsonbody import MAX_DEPTH, InvalidJSON

    def nested(levels):
        deep = leaf = {}
        for _ in range(levels):
            leaf["next"] = {}
            leaf = leaf["next"]
        leaf["national_id"] = "29901011234567"
        leaf["name"] = "Ann"
        return deep

    provider = get_provider("valify")
    walks = (lambda v: provider.storable_body({"result": v}), lambda v: provider.sensitive_parts_removed({"ocr": v}))
    for walk in walks:
        with pytest.raises(InvalidJSON):
            walk(nested(100_000))
        node = next(iter(walk(nested(MAX_DEPTH - 3)).values()))
        while "next" in node:
            node = node["next"]
        assert node == {"name": "Ann"}


def test_other_providers_keep_a_body_unchanged_by_default():
    payload = {"status": "DONE", "result": {"national_id": "1"}}
    assert get_provider("ooto").storable_body(payload) == payload


# -- the language of the hosted flow ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("visitor", "alias", "lang"),
    [("ar", "valify", "ar"), ("ar-eg", "valify", "ar"), ("en-gb", "valify_b", "en"), ("fr", "valify", "en"),
     ("fr", "valify_b", "ar")],
)  # fmt: skip
def test_a_start_from_a_request_asks_for_the_users_language_where_valify_speaks_it(
    valify_api, user, rf, visitor, alias, lang
):
    request = rf.post("/verify/start/")
    request.user, request.LANGUAGE_CODE = user, visitor  # as LocaleMiddleware leaves it
    start(user, provider=alias, request=request)
    assert valify_api.calls[0].request.url.endswith(f"?lang={lang}")  # else the alias's LANG (default en)


def test_a_language_the_site_names_wins_and_without_a_visitors_choice_the_alias_lang_stays(valify_api, user, rf):
    no_locale_middleware = rf.post("/verify/start/")
    no_locale_middleware.user = user
    with translation.override("en"):  # the site's LANGUAGE_CODE: nothing of the user's
        start(user, reuse=False)  # a task, the shell: no visitor to speak for
        start(user, reuse=False, provider="valify_b", request=no_locale_middleware)
        start(user, reuse=False, provider="valify_b", language="en")
    queries = [call.request.url.rsplit("?", 1)[1] for call in valify_api.calls]
    assert queries == ["lang=en", "lang=ar", "lang=en"]


@pytest.mark.parametrize("language", [7, ["ar"], "a" * 36])
def test_a_language_that_is_no_code_is_refused_before_anything_is_sent(valify_api, user, language):
    with pytest.raises(InvalidRequest, match="language"):
        start(user, language=language)
    assert not valify_api.calls and not VerificationSession.objects.exists()

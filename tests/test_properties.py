"""Property tests (hypothesis): the state machine under any delivery of reports, and the parsers of
inbound bodies and provider answers under any input."""

import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verification_link import services, signals
from verification_link.exceptions import ProviderUnavailable
from verification_link.models import VerificationSession
from verification_link.providers import StatusReport, get_provider
from verification_link.testing import VerificationSessionFactory

pytestmark = pytest.mark.django_db
FIXTURES = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
Status = VerificationSession.Status
RANK = VerificationSession.STATUS_RANK
OPEN = ["CREATED", "CAPTCHA_OK", "IN_PROGRESS"]
FINAL = ["DONE", "FAILED", "EXPIRED", "CANCELED"]
SOURCES = ["callback", "webhook", "poll", "return", "api", "expiry"]


@st.composite
def deliveries(draw):
    """What the provider truly went through (forward only, maybe to a final status), and the reports
    we receive about it: out of order, duplicated, from any source — the latest state at least once
    (a later poll would bring it)."""
    path = draw(st.lists(st.sampled_from(OPEN), unique=True, max_size=3).map(lambda s: sorted(s, key=OPEN.index)))
    if draw(st.booleans()):
        path.append(draw(st.sampled_from(FINAL)))
    if not path:
        path = ["CREATED"]
    received = [*draw(st.lists(st.sampled_from(path), max_size=12)), path[-1]]
    order = draw(st.permutations(received))
    return path, [(status, draw(st.sampled_from(SOURCES))) for status in order]


@FIXTURES
@given(deliveries())
def test_any_delivery_ends_in_the_latest_state_never_back_finished_once(django_capture_on_commit_callbacks, plan):
    truth, reports = plan
    session = VerificationSessionFactory(status="CREATED", scopes=["liveness"])
    finished = []

    def on_finished(sender, session, **kwargs):
        finished.append(session.pk)

    signals.verification_finished.connect(on_finished)
    try:
        seen = []
        with django_capture_on_commit_callbacks(execute=True):
            for status, source in reports:
                session = services.apply_report(session, StatusReport(status=status), source=source)
                seen.append(session.status)
    finally:
        signals.verification_finished.disconnect(on_finished)
    latest = truth[-1]
    assert session.status == latest
    assert all(RANK[a] <= RANK[b] for a, b in itertools.pairwise(seen))  # never backwards
    assert finished == ([session.pk] if latest in FINAL else [])
    if latest in FINAL:
        assert session.finished_at is not None and session.url == ""


json_values = st.recursive(
    # what parse_json can yield: it refuses non-finite numbers
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
status_like = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from([*Status.values, "done", "WEIRD", "", None, 3]),
        "nextStep": st.sampled_from(["LIVENESS", "DEEPFAKE", "SEARCH", "ENROLL", None, "", "NOPE", 1]),
        "expiresAt": st.sampled_from(["2025-09-23T13:43:31.114Z", "2025-09-23", "garbage", None, 5]),
        "result": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, status_like))
def test_any_get_status_answer_is_a_report_or_provider_unavailable(body):
    provider = get_provider("ooto")
    try:
        report = provider.parse_status(body)
    except ProviderUnavailable:
        return
    assert report.status in Status.values
    assert report.next_step in ("", *VerificationSession.NextStep.values)
    assert isinstance(report.result, dict)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["status", "session_token", "token", "reference_id", "result", "reason", "x"]),
        json_values,
        max_size=6,
    )
)
def test_any_webhook_body_parses_without_error(payload):
    parsed = get_provider("valify").parse_webhook(payload)
    assert isinstance(parsed.token, str) and isinstance(parsed.reference, str)
    assert parsed.report is None or parsed.report.status in Status.values


@FIXTURES
@given(
    body=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())),
    content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
)
def test_any_bytes_to_the_callback_are_accepted_or_a_4xx(client, fake_ooto, user, body, content_type):
    session = (
        services.start_verification(user=user)
        if not VerificationSession.objects.exists()
        else (VerificationSession.objects.first())
    )
    response = client.post(f"/verify/callback/ooto/{session.callback_secret}/", data=body, content_type=content_type)
    assert response.status_code in (200, 202, 400, 413)
    session.refresh_from_db()
    assert session.status in Status.values


@FIXTURES
@given(
    body=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())),
    headers=st.dictionaries(
        st.sampled_from(["X-Valify-Signature", "X-Valify-Timestamp"]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=70),
    ),
    signed=st.booleans(),
)
def test_any_bytes_to_the_webhook_are_accepted_or_a_4xx(client, body, headers, signed):
    if signed:
        headers = get_provider("valify").webhook_verifier().sign(body)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    response = client.post("/verify/webhook/valify/", data=body, content_type="application/json", **extra)
    assert response.status_code in ((200, 400) if signed else (401,)), response.content

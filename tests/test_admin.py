"""Staff review in the admin: a fast list, a readable detail, sensitive data behind a permission,
and actions that go through the services."""

import json
from datetime import datetime
from datetime import timezone as dt_timezone

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from verification_link import services
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.testing import VerificationEventFactory, VerificationSessionFactory, ooto_result

pytestmark = pytest.mark.django_db
LIST = "/admin/verification_link/verificationsession/"
EVENTS = "/admin/verification_link/verificationevent/"
SENSITIVE_MARKERS = ["demography", "landmarks", "gender", "RAW-BODY-MARKER", "race"]


def staff(django_user_model, username, *perms):
    user = django_user_model.objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return user, client


@pytest.fixture
def reviewer(django_user_model):
    """Staff who may review (view + change) but not see biometric data."""
    return staff(
        django_user_model, "rita", "view_verificationsession", "change_verificationsession", "view_verificationevent"
    )


@pytest.fixture
def officer(django_user_model):
    """Staff with the sensitive-data permission too."""
    return staff(
        django_user_model,
        "otto",
        "view_verificationsession",
        "change_verificationsession",
        "view_verificationevent",
        "view_sensitive_result",
    )


@pytest.fixture
def viewer(django_user_model):
    return staff(django_user_model, "vera", "view_verificationsession", "view_verificationevent")


def done_session(**kwargs):
    session = VerificationSessionFactory(done=True, scopes=["liveness", "deepfake", "search"], **kwargs)
    session.result = ooto_result(session.scopes, fine={"deepfake": False})
    session.result["quality"]["flare"] = {"fine": False, "score": 0.7195}
    session.save()
    VerificationEventFactory(
        session=session,
        kind="callback",
        source="callback",
        body=json.dumps({"status": "DONE", "note": "RAW-BODY-MARKER"}),
    )
    return session


# -- list ---------------------------------------------------------------------------------------------


def test_changelist_query_count_does_not_grow_with_rows(admin_client):
    from django.core.cache import cache

    def queries(n):
        VerificationSessionFactory.create_batch(n)
        cache.clear()  # the summary counted at both sizes
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(LIST).status_code == 200
        return len(ctx.captured_queries)

    assert queries(3) == queries(97)  # 3 then 100 rows


def test_changelist_columns_filters_search_and_summary(admin_client):
    mine = VerificationSessionFactory(user__username="zoe", token="tok-zoe", external_id="ext-zoe", done=True)
    VerificationSessionFactory(status="FAILED", decision="rejected")
    VerificationSessionFactory()
    response = admin_client.get(LIST)
    html = response.content.decode()
    assert mine.short_id in html and "zoe" in html
    summary = response.context["vl_summary"]
    assert [w["total"] for w in summary] == [3, 3]
    assert {v: c for _, c, v in summary[0]["statuses"]}["DONE"] == 1
    assert {v: c for _, c, v in summary[1]["decisions"]}["rejected"] == 1
    for query in ("zoe", "zoe@example.com", "tok-zoe", "ext-zoe"):
        found = admin_client.get(LIST, {"q": query}).context["cl"].result_list
        assert [s.pk for s in found] == [mine.pk], query
    filtered = admin_client.get(LIST, {"status__exact": "DONE", "decision__exact": "approved"}).context["cl"]
    assert [s.pk for s in filtered.result_list] == [mine.pk]
    assert filtered.model_admin.show_full_result_count is False


def test_summary_is_one_query():
    from datetime import timedelta

    from django.utils import timezone

    from verification_link.admin import VerificationSessionAdmin

    now = timezone.now()
    VerificationSessionFactory.create_batch(2, status="DONE", decision="approved")
    VerificationSessionFactory(status="IN_PROGRESS")
    VerificationSessionFactory(status="DONE", decision="review", created_at=now - timedelta(days=2))
    VerificationSessionFactory(status="FAILED", decision="rejected", created_at=now - timedelta(days=6))
    VerificationSessionFactory(status="DONE", decision="approved", created_at=now - timedelta(days=8))
    with CaptureQueriesContext(connection) as ctx:
        day, week = VerificationSessionAdmin.summary()
    assert len(ctx.captured_queries) == 1
    assert (day["total"], week["total"]) == (3, 5)
    assert {v: c for _, c, v in day["statuses"] if c} == {"DONE": 2, "IN_PROGRESS": 1}
    assert {v: c for _, c, v in week["statuses"] if c} == {"DONE": 3, "IN_PROGRESS": 1, "FAILED": 1}
    assert {v: c for _, c, v in day["decisions"] if c} == {"approved": 2, "": 1}
    assert {v: c for _, c, v in week["decisions"] if c} == {"approved": 2, "review": 1, "rejected": 1, "": 1}


# -- detail -----------------------------------------------------------------------------------------------


def test_detail_renders_every_scope_and_highlights_failed_quality(officer):
    _, client = officer
    session = done_session()
    html = client.get(f"{LIST}{session.pk}/change/").content.decode()
    for text in ("liveness", "deepfake", "search", "passed", "failed", "0.8926", "template ", "flare ✘"):
        assert text in html, text
    assert "show JSON" in html
    assert "RAW-BODY-MARKER" in html  # the officer may see raw bodies…
    assert "demography" in html  # …and the sensitive parts


def test_detail_with_missing_parts_and_an_empty_result(admin_client):
    partial = VerificationSessionFactory(done=True, scopes=["liveness", "enroll"], result={"liveness": {"fine": True}})
    html = admin_client.get(f"{LIST}{partial.pk}/change/").content.decode()
    assert "missing" in html and "enroll" in html
    empty = VerificationSessionFactory(status="EXPIRED", url="", result={})
    assert admin_client.get(f"{LIST}{empty.pk}/change/").status_code == 200


def test_hand_off_link_only_while_open_and_only_for_permitted_staff(officer, reviewer):
    session = VerificationSessionFactory(status="IN_PROGRESS", url="https://cloud.ooto-ai.com/flow/SECRET-LINK")
    assert "SECRET-LINK" in officer[1].get(f"{LIST}{session.pk}/change/").content.decode()
    assert 'class="vl-qr"' in officer[1].get(f"{LIST}{session.pk}/change/").content.decode()
    assert "SECRET-LINK" not in reviewer[1].get(f"{LIST}{session.pk}/change/").content.decode()
    finished = VerificationSessionFactory(done=True)
    assert 'class="vl-qr"' not in officer[1].get(f"{LIST}{finished.pk}/change/").content.decode()


def test_nothing_can_be_edited_by_hand(admin_client):
    session = done_session()
    response = admin_client.post(f"{LIST}{session.pk}/change/", {"status": "FAILED", "result": "{}"})
    assert response.status_code == 403
    session.refresh_from_db()
    assert session.status == "DONE"
    assert admin_client.get(f"{LIST}add/").status_code == 403
    event = session.events.first()
    assert admin_client.post(f"{EVENTS}{event.pk}/change/", {"kind": "poll"}).status_code == 403
    assert admin_client.post(f"{EVENTS}{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert VerificationEvent.objects.filter(pk=event.pk).exists()


# -- sensitive data -----------------------------------------------------------------------------------------


def test_staff_without_the_permission_never_receive_sensitive_data(reviewer):
    _user, client = reviewer
    session = done_session()
    event = session.events.get(kind="callback")
    pages = {
        "list": client.get(LIST),
        "list filtered": client.get(LIST, {"status__exact": "DONE"}),
        "detail": client.get(f"{LIST}{session.pk}/change/"),
        "events": client.get(EVENTS),
        "event detail": client.get(f"{EVENTS}{event.pk}/change/"),
        "history": client.get(f"{LIST}{session.pk}/history/"),
        "export": client.post(LIST, {"action": "export_json", "_selected_action": [session.pk]}),
        "approve confirmation": client.post(LIST, {"action": "approve_selected", "_selected_action": [session.pk]}),
        "single reject page": client.get(f"{LIST}{session.pk}/reject/"),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        body = response.content.decode()
        for marker in SENSITIVE_MARKERS:
            assert marker not in body, f"{marker} leaked into {name}"
    exported = json.loads(pages["export"].content)
    assert exported[0]["result"]["liveness"]["fine"] is True  # scores needed for review stay


def test_export_includes_sensitive_parts_for_permitted_staff(officer):
    session = done_session()
    response = officer[1].post(LIST, {"action": "export_json", "_selected_action": [session.pk]})
    assert json.loads(response.content)[0]["result"]["demography"]["age"] == 31


# -- actions ---------------------------------------------------------------------------------------------------


def confirm(client, name, sessions, **extra):
    return client.post(
        LIST,
        {"action": f"{name}_selected", "_selected_action": [s.pk for s in sessions], "confirm": "yes", **extra},
        follow=True,
    )


def test_reject_needs_a_note_then_records_decision_event_and_signal(reviewer, signal_log, commit):
    user, client = reviewer
    session = done_session(decision="review")
    page = client.post(LIST, {"action": "reject_selected", "_selected_action": [session.pk]})
    assert page.status_code == 200 and "Note" in page.content.decode()
    missing_note = client.post(LIST, {"action": "reject_selected", "_selected_action": [session.pk], "confirm": "yes"})
    assert missing_note.status_code == 200 and "This field is required" in missing_note.content.decode()
    session.refresh_from_db()
    assert session.decision == "review"
    with commit():
        done = confirm(client, "reject", [session], note="mask in the selfie")
    assert "1 session rejected." in done.content.decode()
    session.refresh_from_db()
    assert (session.decision, session.reviewed_by, session.review_note) == ("rejected", user, "mask in the selfie")
    event = session.events.get(kind="reviewed", actor=user)
    assert event.data["decision"] == "rejected"
    assert [(s["decision"], s["reviewer"]) for s in signal_log.of("verification_reviewed")] == [("rejected", user)]


def test_approve_in_bulk_skips_open_sessions(reviewer):
    _user, client = reviewer
    finished = [done_session(decision="review") for _ in range(2)]
    open_session = VerificationSessionFactory()
    response = confirm(client, "approve", [*finished, open_session], note="looked fine")
    html = response.content.decode()
    assert "2 sessions approved." in html and "1 skipped" in html
    assert sorted(VerificationSession.objects.values_list("decision", flat=True)) == ["", "approved", "approved"]


def test_cancel_singly_from_the_detail_page(reviewer, signal_log, commit):
    user, client = reviewer
    session = VerificationSessionFactory(status="IN_PROGRESS")
    detail = client.get(f"{LIST}{session.pk}/change/").content.decode()
    assert f"{LIST}{session.pk}/cancel/" in detail
    assert "Cancel" in client.get(f"{LIST}{session.pk}/cancel/").content.decode()
    with commit():
        response = client.post(f"{LIST}{session.pk}/cancel/", {"confirm": "yes"}, follow=True)
    assert "1 session canceled." in response.content.decode()
    session.refresh_from_db()
    assert session.status == "CANCELED"
    assert session.events.get(kind="canceled").actor == user
    assert [k["source"] for k in signal_log.of("verification_finished")] == ["admin"]


def test_refresh_behind_a_confirmation_with_counts(reviewer, fake_ooto, user, commit, signal_log):
    staff_user, client = reviewer
    broken = services.start_verification(user=user, reuse=False)  # refreshed first (oldest first): meets the 503
    good = services.start_verification(user=user, reuse=False)
    fake_ooto.complete(good)
    page = client.post(LIST, {"action": "refresh_selected", "_selected_action": [good.pk, broken.pk]})
    assert page.status_code == 200 and "Refresh from provider" in page.content.decode()
    assert not fake_ooto.calls("GET")  # nothing before confirmation
    fake_ooto.fail_next(503)
    with commit():
        response = confirm(client, "refresh", [good, broken])
    html = response.content.decode()
    assert "1 session refreshed." in html and "1 failed" in html
    good.refresh_from_db()
    assert good.status == "DONE"
    assert good.events.get(kind="status_changed").actor == staff_user
    assert good.events.get(kind="poll").source == "admin"
    assert [k["source"] for k in signal_log.of("verification_finished")] == ["admin"]


def test_actions_are_refused_without_change_permission(viewer):
    _user, client = viewer
    session = VerificationSessionFactory(status="IN_PROGRESS")
    for name in ("refresh", "cancel", "approve", "reject"):
        assert client.get(f"{LIST}{session.pk}/{name}/").status_code == 403
        assert client.post(f"{LIST}{session.pk}/{name}/", {"confirm": "yes", "note": "x"}).status_code == 403
    response = client.post(LIST, {"action": "cancel_selected", "_selected_action": [session.pk], "confirm": "yes"})
    assert response.status_code in (200, 302)
    session.refresh_from_db()
    assert session.status == "IN_PROGRESS"
    assert not session.events.exists()
    assert "cancel_selected" not in client.get(LIST).content.decode()
    assert f"{session.pk}/cancel/" not in client.get(f"{LIST}{session.pk}/change/").content.decode()


def test_events_list_filters_and_links(admin_client):
    session = done_session()
    response = admin_client.get(EVENTS, {"kind__exact": "callback", "valid__isnull": "True"})
    assert response.status_code == 200
    html = response.content.decode()
    assert f"{LIST}{session.pk}/change/" in html
    for name in ("kind", "source", "valid", "processed"):
        assert f"{name}__" in admin_client.get(EVENTS).content.decode()


def test_the_list_stays_cheap_whatever_the_table(admin_client, monkeypatch):
    """Nothing on the page scans the table: provider choices come from settings, the date drill-down
    from index probes (no ``DISTINCT``), the count stops at a cap."""
    from verification_link.admin import CappedCountPaginator

    monkeypatch.setattr(CappedCountPaginator, "CAP", 5)
    VerificationSessionFactory.create_batch(8, provider="ooto_eu")
    with CaptureQueriesContext(connection) as ctx:
        response = admin_client.get(LIST)
    sql = " ".join(q["sql"] for q in ctx.captured_queries).upper()
    assert "DISTINCT" not in sql
    assert "LIMIT 6" in sql  # the capped count
    html = response.content.decode()
    assert "more than 5" in html
    assert "?provider=ooto_eu" in html and "?provider=valify" in html
    assert "created_at__year=" in html
    VerificationSessionFactory(created_at=datetime(2024, 2, 28, 12, tzinfo=dt_timezone.utc))
    year = admin_client.get(LIST, {"created_at__year": "2024"}).content.decode()
    assert "created_at__month=2" in year and "created_at__month=12" not in year  # only months with sessions
    month = admin_client.get(LIST, {"created_at__year": "2024", "created_at__month": "2"}).content.decode()
    assert "created_at__day=28" in month and "created_at__day=29" not in month


@pytest.mark.parametrize("page", [LIST, EVENTS])
@pytest.mark.parametrize("query", ["status=%00", "provider=%00", "decision=a%00", "kind=%00", "q=%00", "%00=1"])
def test_a_nul_in_the_query_string_is_a_400_not_a_database_error(admin_client, page, query):
    # Django's choice filters pass the value straight to the database; PostgreSQL refuses NUL.
    VerificationSessionFactory()
    response = admin_client.get(f"{page}?{query}")
    assert response.status_code == 400
    assert b"NUL" in response.content


def test_the_row_checkbox_is_djangos_own_markup(admin_client):
    """The checkbox is written out rather than rendered through the widget templates (the row's
    biggest cost); the markup must stay what Django's action JavaScript and templates expect."""
    import django
    from django.contrib import admin as django_admin
    from django.test.html import parse_html

    from verification_link.admin import VerificationSessionAdmin

    session = VerificationSessionFactory()
    model_admin = VerificationSessionAdmin(VerificationSession, django_admin.site)
    ours = parse_html(model_admin.action_checkbox(session))
    djangos = parse_html(django_admin.ModelAdmin.action_checkbox(model_admin, session))
    if django.VERSION < (5, 0):  # 4.2 has no aria-label yet
        ours.attributes = [a for a in ours.attributes if a[0] != "aria-label"]
    assert ours == djangos
    page = admin_client.get(LIST).content.decode()
    assert page.count('class="action-select"') == 1 and str(session.pk) in page
    assert 'id="action-toggle"' in page


def test_the_summary_is_counted_once_per_cache_period(admin_client, monkeypatch):
    from verification_link.admin import VerificationSessionAdmin

    VerificationSessionFactory(status="FAILED", decision="rejected")
    first = admin_client.get(LIST)
    assert first.context["vl_summary"][0]["total"] == 1 and "counted at" in first.content.decode()
    VerificationSessionFactory(status="DONE", decision="approved")
    with CaptureQueriesContext(connection) as ctx:
        again = admin_client.get(LIST)
    assert again.context["vl_summary"][0]["total"] == 1  # reused: no GROUP BY this time
    assert not [q for q in ctx.captured_queries if "GROUP BY" in q["sql"]]
    assert again.context["vl_summary_counted_at"] == first.context["vl_summary_counted_at"]
    monkeypatch.setattr(VerificationSessionAdmin, "summary_cache_seconds", 0)
    assert admin_client.get(LIST).context["vl_summary"][0]["total"] == 2

"""Admin polish (issue 16, point 8): read-only pages say "View", sessions are named in words, scopes
and check names read as words, one vocabulary for an event's validity, a review's decision in the
timeline and the event list (its note only with the sensitive permission), decision buttons only
where they apply, summary counts of the filtered list that keep its filters, and a date drill-down
with only the periods that have data, on the event list too. (The 1280 px width is checked in
Chromium: ``tests/browser/test_admin_polish.py``.)"""

import json
import re
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from urllib.parse import parse_qs, urlsplit

import django
import pytest
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone, translation

from verification_link import services
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.testing import VerificationEventFactory, VerificationSessionFactory

from .test_admin import EVENTS, LIST, confirm, staff

pytestmark = pytest.mark.django_db
Kind = VerificationEvent.Kind


@pytest.fixture
def reviewer(django_user_model):
    """Staff who may review (view + change) but not see biometric data or notes."""
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


def page(client, url, **params):
    response = client.get(url, params)
    assert response.status_code == 200, url
    return response.content.decode()


def breadcrumbs(html):
    crumbs = html.split('<div class="breadcrumbs">', 1)[1].split("</div>", 1)[0]
    return [re.sub(r"<[^>]+>", "", part).strip() for part in crumbs.split("&rsaquo;")]


def cells(html, column):
    """The text of each cell of a list column (``field-<column>``)."""
    return [
        re.sub(r"<[^>]+>", "", cell).strip()
        for cell in re.findall(rf'<td class="field-{column}[^"]*">(.*?)</td>', html, flags=re.S)
    ]


def object_tools(client, session):
    html = page(client, f"{LIST}{session.pk}/change/")
    return html.split('class="object-tools"', 1)[1].split("</ul>", 1)[0]


def offered(client, session):
    tools = object_tools(client, session)
    return {name for name in ("approve", "reject", "review", "refresh", "cancel") if f"/{session.pk}/{name}/" in tools}


def final(status, decision="", **kwargs):
    return VerificationSessionFactory(
        status=status,
        url="",
        next_step="",
        next_poll_at=None,
        finished_at=timezone.now(),
        result={"liveness": {"fine": True, "score": 0.99}} if status == "DONE" else {},
        decision=decision,
        **kwargs,
    )


# -- 1. read-only pages say "View" ---------------------------------------------------------------------


def test_read_only_pages_say_view_and_the_actions_still_work(admin_client, reviewer):
    session = final("DONE", "review")
    event = VerificationEventFactory(session=session)
    detail = admin_client.get(f"{LIST}{session.pk}/change/")
    assert detail.context["title"] == "View verification session"
    html = detail.content.decode()
    assert "<h1>View verification session</h1>" in html and "Change verification session" not in html
    assert "<title>" in html and "View verification session |" in html.split("<title>", 1)[1].split("</title>")[0]
    changelist = admin_client.get(LIST)
    assert changelist.context["title"] == "Select verification session to view"
    assert "to change" not in changelist.content.decode()
    event_page = admin_client.get(f"{EVENTS}{event.pk}/change/")
    assert event_page.context["title"] == "View verification event"
    # The admin index and the navigation link the lists as "View", not "Change".
    index = page(admin_client, "/admin/")
    row = index.split('class="model-verificationsession', 1)[1].split("</tr>", 1)[0]
    assert 'class="viewlink"' in row and 'class="changelink"' not in row
    # The change permission keeps its meaning: the reviewer's buttons are there and work.
    _user, client = reviewer
    assert offered(client, session) == {"approve", "reject"}
    done = client.post(f"{LIST}{session.pk}/approve/", {"confirm": "yes", "note": "fine"}, follow=True)
    assert "1 session approved." in done.content.decode()
    assert VerificationSession.objects.get(pk=session.pk).decision == "approved"


# -- 2. breadcrumbs and titles name a session in words ------------------------------------------------------


def test_breadcrumbs_name_the_session_by_provider_id_and_status_label(admin_client, vl_settings):
    session = final("DONE", "review", provider="valify")
    label = f"Valify (valify) {session.short_id} (Done)"  # two accounts of Valify: the alias says which
    html = page(admin_client, f"{LIST}{session.pk}/change/")
    assert breadcrumbs(html)[-1] == label
    assert f"<h2>{label}</h2>" in html
    assert f"valify {session.short_id} (DONE)" not in html  # the model's str, with its codes
    history = page(admin_client, f"{LIST}{session.pk}/history/")
    assert breadcrumbs(history)[-2:] == [label, "History"]
    assert f"Change history: {label}" in history
    reject = page(admin_client, f"{LIST}{session.pk}/reject/")
    assert breadcrumbs(reject)[-2:] == [label, "Reject"]
    canceled = VerificationSessionFactory(status="CANCELED", provider="gone")  # an alias since removed
    assert breadcrumbs(page(admin_client, f"{LIST}{canceled.pk}/change/"))[-1] == f"gone {canceled.short_id} (Canceled)"
    vl_settings(PROVIDERS={"ooto": {"BACKEND": "verification_link.providers.ooto.OotoProvider"}})
    alone = final("FAILED", provider="ooto")
    assert breadcrumbs(page(admin_client, f"{LIST}{alone.pk}/change/"))[-1] == f"OOTO-AI {alone.short_id} (Failed)"


# -- 3. scopes and check names in words ---------------------------------------------------------------------


def test_scopes_and_check_names_read_as_words_in_the_list_and_the_detail(admin_client):
    from verification_link.admin.display import scope_label

    assert [scope_label(s) for s in ("liveness", "deepfake", "face_match", "proof_of_age")] == [
        "Liveness",
        "Deepfake check",
        "Face match",
        "Proof Of Age",
    ]
    session = final("DONE", scopes=["liveness", "deepfake", "face_match", "proof_of_age"])
    listed = page(admin_client, LIST)
    assert cells(listed, "scopes_column") == ["Liveness, Deepfake check, Face match, Proof Of Age"]
    detail = page(admin_client, f"{LIST}{session.pk}/change/")
    scopes = re.search(r'field-scopes_display.*?<div class="readonly">(.*?)</div>', detail, re.S).group(1)
    assert "Liveness" in scopes and "Deepfake check" in scopes and '["liveness"' not in scopes
    checks = detail.split('class="form-row field-result_checks"', 1)[1].split("</table>", 1)[0]
    for name, label in (("face_match", "Face match"), ("deepfake", "Deepfake check"), ("proof_of_age", "Proof Of Age")):
        assert f'<span title="{name}">{label}</span>' in checks  # the provider's name stays as the tooltip


# -- 4. one vocabulary for "valid" ----------------------------------------------------------------------------


def test_valid_reads_valid_refused_or_not_judged_everywhere(admin_client):
    session = final("DONE")
    events = {
        valid: VerificationEventFactory(session=session, kind=kind, source=kind, valid=valid)
        for valid, kind in ((True, "callback"), (False, "webhook"), (None, "poll"))
    }
    listed = page(admin_client, EVENTS)
    assert sorted(cells(listed, "valid_column")) == ["not judged", "refused", "valid"]
    assert "icon-unknown" not in listed  # no True/False/None icons for validity (processed, applied keep theirs)
    filters = listed.split('id="changelist-filter"', 1)[1]
    valid_filter = filters.split("By valid", 1)[1].split("</ul>", 1)[0]
    assert [re.sub(r"<[^>]+>", "", a).strip() for a in re.findall(r"<a [^>]*>(.*?)</a>", valid_filter, re.S)] == [
        "All",
        "valid",
        "refused",
        "not judged",
    ]
    if django.VERSION >= (5, 0):  # "Show counts" (facets) arrived in Django 5.0
        counted = page(admin_client, EVENTS, _facets="True").split("By valid", 1)[1].split("</ul>", 1)[0]
        assert "refused (1)" in counted  # Django's "Show counts" keep working
    refused = admin_client.get(EVENTS, {"valid__exact": "0"}).context["cl"].result_list
    assert [e.pk for e in refused] == [events[False].pk]
    detail = page(admin_client, f"{EVENTS}{events[False].pk}/change/")
    assert re.search(r'field-valid_column">.*?<div class="readonly">refused</div>', detail, re.S)
    timeline = page(admin_client, f"{LIST}{session.pk}/change/").split('class="vl-timeline"', 1)[1]
    timeline = timeline.split("</table>", 1)[0]
    assert all(word in timeline for word in ("<td>valid</td>", "<td>refused</td>", "<td>not judged</td>"))
    assert "✔" not in timeline and "✘" not in timeline


# -- 5. a review in the timeline and the event list ---------------------------------------------------------


def test_a_review_shows_its_decision_and_its_note_only_with_the_permission(admin_user, reviewer, officer):
    session = final("DONE", "review")
    note = "Face of Ann Lee does not match her passport"
    services.review_session(session, decision="rejected", reviewer=admin_user, note=note)
    event = session.events.get(kind=Kind.REVIEWED)

    _officer, sees_all = officer
    for html in (
        page(sees_all, f"{LIST}{session.pk}/change/").split('class="vl-timeline"', 1)[1],
        page(sees_all, EVENTS).split('id="result_list"', 1)[1],
        page(sees_all, f"{EVENTS}{event.pk}/change/"),
    ):
        assert "Rejected (was: Needs review)" in html
        assert note in html

    _reviewer, limited = reviewer
    pages = {
        "timeline": page(limited, f"{LIST}{session.pk}/change/"),
        "event list": page(limited, EVENTS),
        "event page": page(limited, f"{EVENTS}{event.pk}/change/"),
        "export": limited.post(LIST, {"action": "export_json", "_selected_action": [session.pk]}).content.decode(),
    }
    for name, html in pages.items():
        assert "Ann Lee" not in html, f"the note leaked into the {name}"
    for name in ("timeline", "event list", "event page"):
        assert "Rejected (was: Needs review)" in pages[name], name
        assert "(note hidden)" in pages[name], name
    assert json.loads(pages["export"])[0]["decision"] == "rejected"


# -- 6. decision buttons only where they apply ------------------------------------------------------------------


#: (status, decision) → the detail page's buttons, as ``services.review_session`` rules have it:
#: approve a DONE session not approved yet, reject a final one not rejected yet, mark a final one
#: for review unless it is in review; nothing to decide on an open one (refresh or cancel it).
BUTTONS = {
    ("CREATED", ""): {"refresh", "cancel"},
    ("IN_PROGRESS", ""): {"refresh", "cancel"},
    ("DONE", ""): {"approve", "reject", "review"},
    ("DONE", "review"): {"approve", "reject"},
    ("DONE", "approved"): {"reject", "review"},
    ("DONE", "rejected"): {"approve", "review"},
    ("FAILED", ""): {"reject", "review"},
    ("FAILED", "rejected"): {"review"},
    ("EXPIRED", "review"): {"reject"},
    ("CANCELED", ""): {"reject", "review"},
}


def test_decision_buttons_follow_the_review_rules(reviewer):
    user, client = reviewer
    for (status, decision), buttons in BUTTONS.items():
        if status in ("CREATED", "IN_PROGRESS"):
            session = VerificationSessionFactory(status=status)
        else:
            session = final(status, decision)
        assert offered(client, session) == buttons, (status, decision)
        # Each decision offered is one the service records (a verdict replaced once confirmed).
        for name in sorted({"approve", "reject", "review"} & buttons):
            target = {"approve": "approved", "reject": "rejected", "review": "review"}[name]
            services.review_session(session, decision=target, reviewer=user, note="n", replace=True)
            assert VerificationSession.objects.get(pk=session.pk).decision == target, (status, decision, name)
            VerificationSession.objects.filter(pk=session.pk).update(decision=decision)
            session.refresh_from_db()


def test_mark_for_review_singly_and_in_bulk(reviewer, signal_log, commit):
    user, client = reviewer
    approved = final("DONE", "approved")
    tools = object_tools(client, approved)
    assert "Mark for review (changes the decision: Approved)" in tools
    with commit():
        done = client.post(
            f"{LIST}{approved.pk}/review/", {"confirm": "yes", "note": "second look", "replace": "on"}, follow=True
        )
    assert "1 session marked for review." in done.content.decode()
    assert VerificationSession.objects.get(pk=approved.pk).decision == "review"
    assert approved.events.get(kind=Kind.REVIEWED).actor == user
    assert [s["decision"] for s in signal_log.of("verification_reviewed")] == ["review"]
    undecided, open_one = final("FAILED"), VerificationSessionFactory()
    html = confirm(client, "review", [undecided, open_one], note="check the selfie").content.decode()
    assert "1 session marked for review." in html and "1 skipped" in html
    assert VerificationSession.objects.get(pk=undecided.pk).decision == "review"


# -- 7. the summary: counts of the filtered list, links keeping its filters ---------------------------------------


def summary_links(html):
    block = html.split('id="vl-summary"', 1)[1].split("</table>", 1)[0]
    return [
        (parse_qs(urlsplit(href.replace("&amp;", "&")).query, keep_blank_values=True), count)
        for href, count in re.findall(r'<a href="([^"]*)"[^>]*>(\d+)</a>', block)
    ]


def test_summary_counts_the_filtered_list_and_its_links_keep_the_filters(admin_client):
    VerificationSessionFactory.create_batch(2, provider="ooto_eu", status="DONE", decision="approved")
    VerificationSessionFactory(provider="ooto_eu", status="FAILED", decision="rejected")
    VerificationSessionFactory.create_batch(3, provider="ooto", status="DONE", decision="approved")

    response = admin_client.get(LIST, {"provider": "ooto_eu", "p": "0"})
    day = response.context["vl_summary"][0]
    assert day["total"] == 3  # the filtered list, not the 6 sessions of the table
    assert {v: c for _, c, v in day["statuses"] if c} == {"DONE": 2, "FAILED": 1}
    links = summary_links(response.content.decode())
    assert links and all(query.get("provider") == ["ooto_eu"] for query, _count in links)
    assert all("p" not in query for query, _count in links)  # a count's list starts on its first page
    done = next(query for query, _ in links if query.get("status__exact") == ["DONE"])
    assert admin_client.get(LIST, done).context["cl"].result_count == 2

    # A status chosen: the other statuses still count (what their links would list), the decisions
    # count within the chosen status; the links swap the status and keep the rest.
    chosen = admin_client.get(LIST, {"provider": "ooto_eu", "status__exact": "DONE"})
    day = chosen.context["vl_summary"][0]
    assert day["total"] == 2
    assert {v: c for _, c, v in day["statuses"] if c} == {"DONE": 2, "FAILED": 1}
    assert {v: c for _, c, v in day["decisions"] if c} == {"approved": 2}
    failed = next(q for q, _ in summary_links(chosen.content.decode()) if q.get("status__exact") == ["FAILED"])
    assert failed["provider"] == ["ooto_eu"]
    assert admin_client.get(LIST, failed).context["cl"].result_count == 1
    both = admin_client.get(LIST, {"status__exact": "DONE", "decision__exact": "rejected"})
    day = both.context["vl_summary"][0]
    assert day["total"] == 0
    assert {v: c for _, c, v in day["statuses"] if c} == {"FAILED": 1}
    assert {v: c for _, c, v in day["decisions"] if c} == {"approved": 5}


def test_the_filtered_summary_costs_a_constant_number_of_queries_and_is_cached_per_filter(admin_client):
    def grouped_queries(params, rows):
        from django.core.cache import cache

        VerificationSessionFactory.create_batch(rows, status="DONE", decision="approved")
        cache.clear()
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(LIST, params).status_code == 200
        return len([q for q in ctx.captured_queries if "GROUP BY" in q["sql"]])

    for params, expected in (({}, 1), ({"provider": "ooto"}, 1), ({"status__exact": "DONE"}, 1)):
        assert grouped_queries(params, 2) == grouped_queries(params, 20) == expected, params
    assert grouped_queries({"status__exact": "DONE", "decision__exact": "approved"}, 2) == 2
    first = admin_client.get(LIST, {"provider": "ooto"})
    with CaptureQueriesContext(connection) as ctx:
        again = admin_client.get(LIST, {"provider": "ooto", "o": "2"})  # another sort: the same counts
    assert not [q for q in ctx.captured_queries if "GROUP BY" in q["sql"]]
    assert again.context["vl_summary_counted_at"] == first.context["vl_summary_counted_at"]
    other = admin_client.get(LIST, {"provider": "valify"})
    assert other.context["vl_summary"][1]["total"] == 0  # another filter: counted for itself


# -- 9. the date drill-down: only periods with data, Django's month names, on both lists ------------------------------


def at(year, month, day):
    return datetime(year, month, day, 12, tzinfo=dt_timezone.utc)


def drill(client, url, **params):
    html = page(client, url, **params)
    if '<ul class="toplinks">' not in html:
        return []
    nav = html.split('<ul class="toplinks">', 1)[1].split("</ul>", 1)[0]
    return [re.sub(r"<[^>]+>", "", a).strip() for a in re.findall(r"<li>(.*?)</li>", nav, re.S)]


def test_the_drill_down_offers_only_periods_with_sessions(admin_client):
    for when in (at(2021, 3, 5), at(2021, 3, 20), at(2023, 11, 1)):
        VerificationSessionFactory(created_at=when)
    assert drill(admin_client, LIST) == ["2021", "2023"]  # no 2022, nothing since 2023
    assert drill(admin_client, LIST, created_at__year="2021") == ["Mar"]
    assert drill(admin_client, LIST, created_at__year="2021", created_at__month="3") == ["5", "20"]
    one_day = page(admin_client, LIST, created_at__year="2021", created_at__month="3", created_at__day="5")
    assert '<li class="date-back"><a href="?created_at__year=2021&amp;created_at__month=3">‹ March 2021</a>' in one_day
    assert drill(admin_client, LIST, created_at__year="2022") == []
    # Only the filtered list's periods.
    VerificationSessionFactory(created_at=at(2022, 6, 1), provider="valify")
    assert drill(admin_client, LIST, provider="valify") == ["2022"]
    recent = VerificationSessionFactory()  # this month: also offered as a recent month
    labels = drill(admin_client, LIST)
    local = timezone.localtime(recent.created_at)
    assert str(local.year) in labels and any(label.endswith(str(local.year)) and " " in label for label in labels)


def test_the_event_list_uses_the_same_drill_down_without_a_scan(admin_client):
    session = final("DONE")
    for when in (at(2021, 3, 5), at(2023, 11, 1)):
        VerificationEventFactory(session=session, created_at=when)
    with CaptureQueriesContext(connection) as ctx:
        assert drill(admin_client, EVENTS) == ["2021", "2023"]
    assert "DISTINCT" not in " ".join(q["sql"] for q in ctx.captured_queries).upper()
    assert drill(admin_client, EVENTS, created_at__year="2023") == ["Nov"]


def test_month_names_are_djangos_translated_ones_and_the_probes_are_one_query():
    from verification_link.admin import listing, month_links

    assert not hasattr(listing, "calendar")  # Python's calendar names months in English only
    VerificationSessionFactory(created_at=at(2021, 3, 5))
    request = RequestFactory().get(LIST, {"created_at__year": "2021"})
    with translation.override("de"), CaptureQueriesContext(connection) as ctx:
        links = month_links(request, "created_at", VerificationSession.objects.all())
    assert [choice["label"] for choice in links["choices"]] == ["Mär"]
    assert links["back"]["label"] == "\u2039 Alle Daten"
    assert len(ctx.captured_queries) == 1
    with translation.override("de"):
        top = month_links(RequestFactory().get(LIST), "created_at", VerificationSession.objects.all())
    assert [choice["label"] for choice in top["choices"]] == ["2021"]
    assert month_links(RequestFactory().get(LIST), "created_at", VerificationSession.objects.none()) == {
        "back": None,
        "choices": [],
    }


def test_the_recent_months_cross_the_year_turn(monkeypatch):
    from verification_link.admin import month_links

    january = at(2027, 1, 15)
    VerificationSessionFactory(created_at=january - timedelta(days=40))  # early December 2026
    monkeypatch.setattr(timezone, "now", lambda: january)
    links = month_links(RequestFactory().get(LIST), "created_at", VerificationSession.objects.all())
    assert [choice["label"] for choice in links["choices"]] == ["2026", "December 2026"]
    assert "created_at__year=2026&created_at__month=12" in links["choices"][1]["url"]

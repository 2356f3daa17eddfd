"""The admin overview of verification sessions: its figures, its charts (inline SVG, mirrored right
to left), who may open it, and a constant number of queries whatever the table's size."""

import itertools
import re
import statistics
from datetime import timedelta
from datetime import timezone as dt_timezone

import pytest
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from django.utils import timezone

from verification_link import services
from verification_link.admin.charts import nice_ceiling, nice_duration_ceiling
from verification_link.admin.overview import duration_text
from verification_link.models import VerificationEvent, VerificationSession
from verification_link.services.overview import outcome_of, overview, period
from verification_link.testing import VerificationSessionFactory

pytestmark = pytest.mark.django_db
LIST = "/admin/verification_link/verificationsession/"
OVERVIEW = LIST + "overview/"


def staff_client(django_user_model, username, *perms, is_staff=True):
    user = django_user_model.objects.create_user(username, f"{username}@example.com", "pw", is_staff=is_staff)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


def finished(provider="ooto", *, status="DONE", decision="approved", took=60.0, days_ago=0, **fields):
    """A session that finished ``days_ago`` days ago (an hour before now) after ``took`` seconds."""
    end = timezone.now() - timedelta(days=days_ago, hours=1)
    return VerificationSession.objects.create(
        provider=provider,
        status=status,
        decision=decision,
        created_at=end - timedelta(seconds=took),
        finished_at=end,
        **fields,
    )


def content_main(response):
    """The page's own part: from ``#content-main`` to the end of its closing note."""
    html = response.content.decode()
    start = html.index('<div id="content-main"')
    return html[start : html.index("</div>", html.index('class="vl-ov-note"', start))]


# -- the figures ---------------------------------------------------------------------------------------


def test_sessions_started_and_finished_per_day():
    finished(days_ago=0)
    finished(days_ago=0)
    finished(days_ago=3)
    VerificationSessionFactory(created_at=timezone.now() - timedelta(days=3, hours=2))  # open, started only
    VerificationSessionFactory(created_at=timezone.now() - timedelta(days=40))  # before the period
    data = overview()
    assert len(data.days) == 30 and data.days[-1] == timezone.localdate()
    assert data.started[-1] == 2 and data.finished[-1] == 2
    assert data.started[-4] == 2 and data.finished[-4] == 1
    assert data.total_started == 4 and data.total_finished == 3


@override_settings(TIME_ZONE="Europe/Berlin")
def test_days_are_local_days_a_dst_change_included():
    # 2026-10-25: Berlin's clocks go back, a 25-hour day.
    days, bounds = period(3, today=timezone.datetime(2026, 10, 26).date())
    utc = [bound.astimezone(dt_timezone.utc) for bound in bounds]  # aware arithmetic in UTC, not wall time
    lengths = [(b - a).total_seconds() / 3600 for a, b in itertools.pairwise(utc)]
    assert [d.isoformat() for d in days] == ["2026-10-24", "2026-10-25", "2026-10-26"]
    assert lengths == [24, 25, 24]


@pytest.mark.parametrize(
    ("status", "decision", "outcome"),
    [
        ("DONE", "approved", "passed"),
        ("DONE", "rejected", "failed"),
        ("FAILED", "", "failed"),
        ("FAILED", "review", "review"),
        ("DONE", "review", "review"),
        ("DONE", "", "undecided"),
        ("EXPIRED", "", "abandoned"),
        ("CANCELED", "rejected", "abandoned"),
    ],
)
def test_the_outcome_of_a_finished_session(status, decision, outcome):
    assert outcome_of(status, decision) == outcome


def test_outcomes_by_provider():
    for decision in ("approved", "approved", "rejected", "review"):
        finished("ooto", decision=decision)
    finished("valify", status="EXPIRED", decision="")
    finished("valify", status="FAILED", decision="")
    finished("ooto", decision="approved", days_ago=45)  # before the period
    data = overview()
    assert data.outcomes == {
        "ooto": {"passed": 2, "failed": 1, "review": 1},
        "valify": {"abandoned": 1, "failed": 1},
    }


def test_the_median_time_to_a_result_is_exact():
    ooto = [12.0, 30.0, 45.0, 100.0, 3600.0]
    valify = [20.0, 40.0, 60.0, 200.0]
    for took in ooto:
        finished("ooto", took=took)
    for took in valify:
        finished("valify", status="FAILED", decision="", took=took)
    finished("valify", status="EXPIRED", decision="", took=86400)  # no result: not a time to finish
    medians = overview().medians
    assert medians is not None
    assert medians["ooto"].count == 5 and medians["ooto"].seconds == pytest.approx(statistics.median(ooto), abs=0.01)
    assert medians["valify"].count == 4
    assert medians["valify"].seconds == pytest.approx(statistics.median(valify), abs=0.01)


def test_the_median_of_one_and_of_two_results_and_none_without_a_result():
    finished("ooto", took=42.0)
    finished("ooto_eu", took=10.0)
    finished("ooto_eu", took=31.0)
    finished("valify", status="CANCELED", decision="", took=5.0)  # finished, but no result
    medians = overview().medians
    assert medians is not None
    assert (medians["ooto"].count, medians["ooto"].seconds) == (1, pytest.approx(42.0, abs=0.01))
    assert (medians["ooto_eu"].count, medians["ooto_eu"].seconds) == (2, pytest.approx(20.5, abs=0.01))
    assert "valify" not in medians


def test_where_flows_were_abandoned_is_the_status_they_left(django_user_model):
    staff = django_user_model.objects.create_user("ada", is_staff=True)
    for status in ("CAPTCHA_OK", "CAPTCHA_OK", "IN_PROGRESS"):
        services.cancel_session(VerificationSessionFactory(status=status), by=staff)
    overdue = timezone.now() - timedelta(hours=2)
    VerificationSessionFactory(status="CREATED", expires_at=overdue)
    VerificationSessionFactory(status="IN_PROGRESS", expires_at=overdue)
    assert services.run_expiry_sweep(last_check=False).processed == 2
    finished(status="DONE")  # finished with a result: not abandoned
    abandoned = overview().abandoned
    assert abandoned == {
        "CREATED": {"EXPIRED": 1},
        "CAPTCHA_OK": {"CANCELED": 2},
        "IN_PROGRESS": {"CANCELED": 1, "EXPIRED": 1},
    }
    # Not counted: a report not applied, and a move older than the period.
    session = VerificationSessionFactory(status="IN_PROGRESS")
    VerificationEvent.objects.create(
        session=session, kind="poll", applied=False, old_status="IN_PROGRESS", new_status="EXPIRED"
    )
    VerificationEvent.objects.create(
        session=session,
        kind="expired",
        applied=True,
        old_status="IN_PROGRESS",
        new_status="EXPIRED",
        created_at=timezone.now() - timedelta(days=31),
    )
    assert overview().abandoned == abandoned


# -- the page ------------------------------------------------------------------------------------------


def test_the_page_shows_four_charts_with_text_alternatives(admin_client):
    finished("ooto", took=74)
    finished("ooto", status="FAILED", decision="", took=30)
    services.cancel_session(VerificationSessionFactory(status="CAPTCHA_OK"))
    response = admin_client.get(OVERVIEW)
    assert response.status_code == 200
    main = content_main(response)
    assert main.count("<svg ") == 4
    for ident in ("days", "outcomes", "medians", "abandoned"):
        assert f'aria-labelledby="vl-ov-{ident}-title vl-ov-{ident}-desc"' in main
        assert f'<title id="vl-ov-{ident}-title">' in main and f'<desc id="vl-ov-{ident}-desc">' in main
    assert main.count("<table>") == 4  # each chart's figures as a table
    assert "3 sessions started and 3 finished in the last 30 days" in main
    assert "ooto: 33% passed of 3" in main  # one passed, one failed, one canceled
    assert "ooto: 52 s (2 sessions)" in main  # the median of 30 s and 74 s
    assert "Captcha passed: 1" in main


def test_the_page_has_no_script_and_no_inline_style(admin_client):
    finished()
    main = content_main(admin_client.get(OVERVIEW))
    assert "<script" not in main and "style=" not in main and "<style" not in main
    assert not re.search(r"<[^>]+\son\w+=", main)  # no event handler attribute either
    page = admin_client.get(OVERVIEW).content.decode()
    assert "verification_link/admin_overview.css" in page


def test_an_empty_table_says_so(admin_client):
    main = content_main(admin_client.get(OVERVIEW))
    assert "No session started in the last 30 days; 0 finished." in main
    assert "No session finished in these days." in main
    assert "No session expired or was canceled in these days." in main
    assert main.count("<svg ") == 1  # the days, all at zero


def test_a_provider_alias_is_escaped_in_the_svg(admin_client):
    finished("<b>x</b>")
    main = content_main(admin_client.get(OVERVIEW))
    assert "<b>x</b>" not in main and "&lt;b&gt;x&lt;/b&gt;" in main


def bars(main, css):
    """(x, width) of each bar of class ``css``, in the order drawn (oldest day first)."""
    return [
        (float(x), float(w))
        for x, w in re.findall(rf'<rect class="{css}" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', main)
    ]


def test_right_to_left_the_charts_are_mirrored(admin_client):
    finished(days_ago=20)
    finished(days_ago=1)
    ltr = content_main(admin_client.get(OVERVIEW))
    with override_settings(LANGUAGE_CODE="ar"):
        rtl = content_main(admin_client.get(OVERVIEW))
    assert 'direction="ltr"' in ltr and 'direction="rtl"' in rtl
    (older, _), (newer, _) = bars(ltr, "vl-ov-started")
    assert older < newer  # time runs left to right
    (older_rtl, width), (newer_rtl, _) = bars(rtl, "vl-ov-started")
    assert older_rtl > newer_rtl  # and right to left in Arabic, mirrored
    assert older_rtl + width == pytest.approx(760 - older, abs=0.2)


@override_settings(LANGUAGE_CODE="fr")
def test_dates_and_words_follow_the_language(admin_client):
    finished()
    main = content_main(admin_client.get(OVERVIEW))
    today = timezone.localdate()
    from django.utils import translation
    from django.utils.formats import date_format

    with translation.override("fr"):
        assert date_format(today, "DATE_FORMAT") in main  # e.g. "3 décembre 2026"


def test_durations_in_words():
    assert duration_text(42.4) == "42 s"
    assert duration_text(134) == "2 min 14 s"
    assert duration_text(2 * 3600 + 5 * 60 + 9) == "2 h 5 min"


def test_value_axis_tops_are_round():
    assert nice_ceiling(0) == (4.0, 1.0)
    assert nice_ceiling(1) == (4.0, 1.0)  # never a step under one: no "0, 0, 1, 2" axis
    assert nice_ceiling(7) == (8.0, 2.0)
    assert nice_ceiling(1234) == (2000.0, 500.0)
    assert nice_duration_ceiling(524) == (720.0, 180.0)  # 8 min 44 s: up to 12 min, a line every 3 min
    assert nice_duration_ceiling(40) == (40.0, 10.0)


# -- who may open it, and from where --------------------------------------------------------------------


def test_staff_with_view_permission_may_open_it(django_user_model):
    client = staff_client(django_user_model, "vera", "view_verificationsession")
    assert client.get(OVERVIEW).status_code == 200


def test_staff_without_view_permission_get_403(django_user_model):
    client = staff_client(django_user_model, "eve", "view_verificationevent")
    assert client.get(OVERVIEW).status_code == 403


def test_non_staff_and_anonymous_are_sent_to_the_login(django_user_model):
    member = staff_client(django_user_model, "max", "view_verificationsession", is_staff=False)
    for client in (member, Client()):
        response = client.get(OVERVIEW)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_changelist_links_the_overview(admin_client):
    response = admin_client.get(LIST)
    assert f'href="{OVERVIEW}"' in response.content.decode()


# -- cost ----------------------------------------------------------------------------------------------


def make(n):
    now = timezone.now()
    VerificationSession.objects.bulk_create(
        [
            VerificationSession(
                provider=("ooto", "ooto_eu", "valify")[i % 3],
                status=("DONE", "FAILED", "EXPIRED", "CANCELED", "IN_PROGRESS")[i % 5],
                decision=("approved", "rejected", "review", "")[i % 4],
                created_at=now - timedelta(hours=i % 700, seconds=90),
                finished_at=None if i % 5 == 4 else now - timedelta(hours=i % 700),
            )
            for i in range(n)
        ]
    )
    VerificationEvent.objects.bulk_create(
        [
            VerificationEvent(kind="expired", applied=True, old_status="IN_PROGRESS", new_status="EXPIRED")
            for _ in range(n // 5)
        ]
    )


def test_a_constant_number_of_queries_whatever_the_size(django_user_model, django_assert_num_queries):
    client = staff_client(django_user_model, "vera", "view_verificationsession")
    client.get(OVERVIEW)  # warm: content types and permissions cached as in the other requests
    counts = []
    for size in (0, 10, 990):  # 0, 10 and 1,000 sessions
        make(size)
        with django_assert_num_queries(8) as captured:  # session, user, 2 of permissions, 4 aggregates
            assert client.get(OVERVIEW).status_code == 200
        counts.append(len(captured.captured_queries))
    assert counts == [8, 8, 8]
    assert VerificationSession.objects.count() == 1000


def test_the_page_works_without_time_zones(admin_client, settings):
    """USE_TZ = False: the days are the server's local days (``localdate()`` would refuse naive times)."""
    settings.USE_TZ = False
    finished("ooto", took=74)
    services.cancel_session(VerificationSessionFactory(status="CAPTCHA_OK"))
    response = admin_client.get(OVERVIEW)
    assert response.status_code == 200
    assert content_main(response).count("<svg ") == 4


@pytest.mark.urls("tests.urls_plain_admin")
def test_the_changelist_of_a_sites_own_admin_has_no_overview_link(admin_client):
    """A site that registers its own ModelAdmin for the sessions keeps a working list without the link
    (the template still applies, by its path; the overview URL does not exist there)."""
    response = admin_client.get("/plain-admin/verification_link/verificationsession/")
    assert response.status_code == 200
    assert b"vl-overview-link" not in response.content

"""The overview page of verification sessions in the admin (``…/verificationsession/overview/``):
four pictures of the last 30 days — sessions started and finished per day, outcomes by provider,
the median time to a result, where flows were abandoned — each with its figures in a table.

The figures come from ``services.overview`` in four aggregate queries whatever the table's size;
the charts are inline SVG (``admin.charts``). Staff who may view sessions may view it.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone, translation
from django.utils.formats import date_format
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from ..models import VerificationSession
from ..services import overview as figures
from .charts import Row, Series, bar_chart, column_chart, count_text, data_table, nice_duration_ceiling, percent

Status = VerificationSession.Status


def outcome_series() -> list[Series]:
    return [
        Series("passed", gettext("Passed"), "vl-ov-passed"),
        Series("failed", gettext("Failed"), "vl-ov-failed"),
        Series("review", gettext("Needs review"), "vl-ov-review"),
        Series("undecided", gettext("Awaiting a decision"), "vl-ov-undecided"),
        Series("abandoned", gettext("Abandoned (expired or canceled)"), "vl-ov-abandoned"),
    ]


def duration_text(seconds: float) -> str:
    """A duration as staff read it: seconds, minutes and seconds, or hours and minutes."""
    whole = round(seconds)
    if whole < 60:
        return gettext("%(seconds)d s") % {"seconds": whole}
    if whole < 3600:
        return gettext("%(minutes)d min %(seconds)d s") % {"minutes": whole // 60, "seconds": whole % 60}
    return gettext("%(hours)d h %(minutes)d min") % {"hours": whole // 3600, "minutes": whole % 3600 // 60}


def _count(value: int) -> str:
    return count_text(value)


def per_day_chart(data: figures.Overview, rtl: bool) -> dict[str, Any]:
    series = [
        Series("started", gettext("started"), "vl-ov-started"),
        Series("finished", gettext("finished"), "vl-ov-finished"),
    ]
    labels = [date_format(day, "MONTH_DAY_FORMAT") for day in data.days]
    busiest = max(range(len(data.days)), key=lambda i: data.started[i]) if data.days else 0
    figures_ = {
        "started": _count(data.total_started),
        "finished": _count(data.total_finished),
        "days": len(data.days),
        "busiest": date_format(data.days[busiest], "DATE_FORMAT"),
        "most": _count(data.started[busiest]),
    }
    if data.total_started:
        desc = (
            gettext(
                "%(started)s sessions started and %(finished)s finished in the last %(days)s days; the most "
                "started on %(busiest)s (%(most)s)."
            )
            % figures_
        )
    else:
        desc = gettext("No session started in the last %(days)s days; %(finished)s finished.") % figures_
    svg = column_chart(
        labels,
        series,
        {"started": data.started, "finished": data.finished},
        axis_every=7,
        rtl=rtl,
        ident="vl-ov-days",
        title=gettext("Sessions started and finished per day"),
        desc=desc,
    )
    table = {
        "head": [gettext("Day"), gettext("Started"), gettext("Finished")],
        "rows": [
            [date_format(day, "DATE_FORMAT"), _count(s), _count(f)]
            for day, s, f in zip(data.days, data.started, data.finished, strict=True)
        ],
    }
    return {"id": "days", "title": gettext("Started and finished per day"), "svg": svg, "desc": desc,
            "legend": series, "table": table}  # fmt: skip


def outcomes_chart(data: figures.Overview, rtl: bool) -> dict[str, Any]:
    series = outcome_series()
    rows, table_rows = [], []
    for alias, counts in data.outcomes.items():
        total = sum(counts.values())
        rows.append(Row(alias, dict(counts), end_text=_count(total)))
        shares = [percent(100.0 * counts.get(s.key, 0) / total) if total else "—" for s in series]
        table_rows.append([alias, _count(total), *shares])
    parts = []
    for alias, counts in data.outcomes.items():
        total = sum(counts.values())
        parts.append(
            gettext("%(provider)s: %(passed)s passed of %(total)s")
            % {"provider": alias, "passed": percent(100.0 * counts.get("passed", 0) / total), "total": _count(total)}
        )
    desc = "; ".join(parts) or gettext("No session finished in these days.")
    title = gettext("Outcomes by provider")
    chart: dict[str, Any] = {"id": "outcomes", "title": title, "desc": desc, "legend": series}
    chart["table"] = {
        "head": [gettext("Provider"), gettext("Finished"), *(s.label for s in series)],
        "rows": table_rows,
    }
    if rows:
        chart["svg"] = bar_chart(rows, series, shares=True, rtl=rtl, ident="vl-ov-outcomes", title=title, desc=desc)
    return chart


def medians_chart(data: figures.Overview, rtl: bool) -> dict[str, Any]:
    title = gettext("Median time to a result")
    chart: dict[str, Any] = {"id": "medians", "title": title, "legend": []}
    if data.medians is None:
        chart["desc"] = gettext("This database has no query for the median here.")
        return chart
    series = [Series("seconds", gettext("median time"), "vl-ov-median")]
    rows = [
        Row(alias, {"seconds": median.seconds}, end_text=duration_text(median.seconds))
        for alias, median in data.medians.items()
    ]
    parts = [
        ngettext(
            "%(provider)s: %(time)s (%(count)s session)", "%(provider)s: %(time)s (%(count)s sessions)", median.count
        )
        % {"provider": alias, "time": duration_text(median.seconds), "count": _count(median.count)}
        for alias, median in data.medians.items()
    ]
    chart["desc"] = "; ".join(parts) or gettext("No session reached a result in these days.")
    chart["table"] = {
        "head": [gettext("Provider"), gettext("Median time"), gettext("Sessions with a result")],
        "rows": [[alias, duration_text(m.seconds), _count(m.count)] for alias, m in data.medians.items()],
    }
    if rows:
        chart["svg"] = bar_chart(
            rows,
            series,
            shares=False,
            rtl=rtl,
            ident="vl-ov-medians",
            title=title,
            desc=chart["desc"],
            value_text=duration_text,
            ceiling_of=nice_duration_ceiling,
        )
    return chart


def abandoned_chart(data: figures.Overview, rtl: bool) -> dict[str, Any]:
    series = [
        Series(Status.EXPIRED, gettext("expired"), "vl-ov-expired"),
        Series(Status.CANCELED, gettext("canceled"), "vl-ov-canceled"),
    ]
    labels = dict(Status.choices)
    rows = [
        Row(str(labels.get(step, step)), dict(counts), end_text=_count(sum(counts.values())))
        for step, counts in data.abandoned.items()
    ]
    total = sum(sum(counts.values()) for counts in data.abandoned.values())
    title = gettext("Where flows were abandoned")
    if total:
        parts = [
            gettext("%(step)s: %(count)s") % {"step": row.label, "count": _count(round(sum(row.values.values())))}
            for row in rows
        ]
        desc = gettext("Sessions that expired or were canceled, by the status they were in: %(steps)s.") % {
            "steps": "; ".join(parts)
        }
    else:
        desc = gettext("No session expired or was canceled in these days.")
    chart: dict[str, Any] = {"id": "abandoned", "title": title, "desc": desc, "legend": series}
    chart["table"] = {
        "head": [gettext("Status it was in"), gettext("Expired"), gettext("Canceled"), gettext("All")],
        "rows": [
            [
                row.label,
                *(_count(round(row.values.get(s.key, 0))) for s in series),
                _count(round(sum(row.values.values()))),
            ]
            for row in rows
        ],
    }
    if total:
        chart["svg"] = bar_chart(rows, series, shares=False, rtl=rtl, ident="vl-ov-abandoned", title=title, desc=desc)
    return chart


class SessionOverview:
    """The ``overview/`` page of the session admin, linked from its change list."""

    overview_template = "admin/verification_link/verificationsession/overview.html"
    overview_title = _("Overview of verification sessions")

    def get_urls(self) -> list[Any]:
        opts = self.opts  # type: ignore[attr-defined]
        view = self.admin_site.admin_view(self.overview_view)  # type: ignore[attr-defined]
        overview = path("overview/", view, name=f"{opts.app_label}_{opts.model_name}_overview")
        return [overview, *super().get_urls()]  # type: ignore[misc]

    def overview_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):  # type: ignore[attr-defined]
            raise PermissionDenied
        data = figures.overview()
        rtl = translation.get_language_bidi()
        period = gettext("%(first)s to %(last)s (%(zone)s)") % {
            "first": date_format(data.days[0], "DATE_FORMAT"),
            "last": date_format(data.days[-1], "DATE_FORMAT"),
            "zone": timezone.get_current_timezone_name(),
        }
        charts = [
            per_day_chart(data, rtl),
            outcomes_chart(data, rtl),
            medians_chart(data, rtl),
            abandoned_chart(data, rtl),
        ]
        for chart in charts:
            table = chart.get("table")
            if table and table["rows"]:
                chart["table_html"] = data_table(chart["title"], table["head"], table["rows"])
        context = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "opts": self.opts,  # type: ignore[attr-defined]
            "title": self.overview_title,
            "vl_period": period,
            "vl_charts": charts,
        }
        return TemplateResponse(request, self.overview_template, context)

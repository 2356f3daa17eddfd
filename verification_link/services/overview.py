"""The figures of the admin overview: four aggregate queries over the last ``DAYS`` days, whatever
the size of the tables (each an index range, none a scan of the table; ``overview()``).

- sessions started and finished per local day: one statement of counting subqueries, a
  ``created_at`` and a ``finished_at`` index range per day (day boundaries are local midnights,
  computed here, so a DST change is a 23- or 25-hour day and no per-row date function runs);
- outcomes by provider of the sessions finished in the period (``vl_session_finished`` covers it;
  SQLite skip-scans ``vl_session_outcomes``, already in the order of its ``GROUP BY``);
- the median time from start to end by provider, of those that reached a result (DONE, FAILED):
  one query, exact (``percentile_cont`` on PostgreSQL, each provider's middle rows on SQLite);
- where flows were abandoned: the status each session left when it became EXPIRED or CANCELED —
  its one applied move there, in the event trail (``vl_event_abandoned``). The session row keeps no
  step once final (``next_step`` is cleared), so the status it left is the finest step on record
  for every provider.

Read-only: nothing here writes.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, Func, IntegerField
from django.utils import timezone

from ..models import VerificationEvent, VerificationSession

Status = VerificationSession.Status
Decision = VerificationSession.Decision

#: Days the overview covers, today included.
DAYS = 30

#: The outcome of a finished session, in the order the charts stack them.
OUTCOMES = ("passed", "failed", "review", "undecided", "abandoned")

#: The statuses a flow can be abandoned at, in the order of the flow.
ABANDONED_AT = (Status.CREATED, Status.CAPTCHA_OK, Status.IN_PROGRESS)
ABANDONED_AS = (Status.EXPIRED, Status.CANCELED)

#: Seconds from start to end, per database (the median query's vendor-specific part, with its
#: ranking: ``_medians``).
_DURATION_SQL = {
    # date_part is double precision; EXTRACT is numeric since PostgreSQL 14, and sorts slower.
    "postgresql": 'date_part(\'epoch\', "finished_at" - "created_at")',
    "sqlite": '(julianday("finished_at") - julianday("created_at")) * 86400.0',
    "mysql": "TIMESTAMPDIFF(MICROSECOND, `created_at`, `finished_at`) / 1000000.0",
}


@dataclass(frozen=True)
class Median:
    """The median seconds from start to end of ``count`` sessions of one provider."""

    seconds: float
    count: int


@dataclass
class Overview:
    """What the overview page shows, for ``days`` (local dates, oldest first)."""

    days: list[date]
    start: datetime
    end: datetime
    started: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    #: provider alias -> outcome (``OUTCOMES``) -> sessions finished in the period
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    #: provider alias -> median time to a result; ``None`` when the database has no query for it
    medians: dict[str, Median] | None = field(default_factory=dict)
    #: status left (``ABANDONED_AT``) -> EXPIRED or CANCELED -> sessions
    abandoned: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def total_started(self) -> int:
        return sum(self.started)

    @property
    def total_finished(self) -> int:
        return sum(self.finished)


def outcome_of(status: str, decision: str) -> str:
    """The outcome (``OUTCOMES``) of a finished session: abandoned when it expired or was canceled,
    else its decision, and a FAILED one nobody decided on counts as failed."""
    if status in ABANDONED_AS:
        return "abandoned"
    if decision == Decision.APPROVED:
        return "passed"
    if decision == Decision.REJECTED:
        return "failed"
    if decision == Decision.REVIEW:
        return "review"
    return "failed" if status == Status.FAILED else "undecided"


def period(days: int = DAYS, *, today: date | None = None) -> tuple[list[date], list[datetime]]:
    """The last ``days`` local dates up to ``today``, and their ``days + 1`` boundaries (local
    midnights, aware when ``USE_TZ``)."""
    # USE_TZ = False: datetimes are naive local time already (localdate() refuses them).
    today = today or (timezone.localdate() if _use_tz() else date.today())
    dates = [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    bounds = [_midnight(day) for day in [*dates, today + timedelta(days=1)]]
    return dates, bounds


def overview(days: int = DAYS, *, today: date | None = None) -> Overview:
    """The overview's figures in four queries, whatever the number of sessions."""
    dates, bounds = period(days, today=today)
    result = Overview(days=dates, start=bounds[0], end=bounds[-1])
    result.started, result.finished = _per_day(bounds)
    result.outcomes = _outcomes(result.start, result.end)
    result.medians = _medians(result.start, result.end, list(result.outcomes))
    result.abandoned = _abandoned(result.start, result.end)
    return result


def _midnight(day: date) -> datetime:
    moment = datetime.combine(day, time())
    return timezone.make_aware(moment) if timezone.is_naive(moment) and _use_tz() else moment


def _use_tz() -> bool:
    from django.conf import settings

    return bool(settings.USE_TZ)


class _CountRows(Func):
    """``COUNT(*)`` as a plain function: the subquery counts its rows without a ``GROUP BY``."""

    function = "COUNT"
    template = "%(function)s(*)"
    contains_aggregate = False

    def __init__(self) -> None:
        super().__init__(output_field=IntegerField())


def _per_day(bounds: list[datetime]) -> tuple[list[int], list[int]]:
    """Sessions started and finished each day: one statement, a counting subquery per day and
    column (an index range each). The ORM compiles each column's subquery once; the days only
    change its parameters (60 querysets built and compiled cost more than the counting)."""
    days = len(bounds) - 1
    subqueries, params = [], []
    for column in ("created_at", "finished_at"):
        rows = VerificationSession.objects.order_by().filter(
            **{f"{column}__gte": bounds[0], f"{column}__lt": bounds[1]}
        )
        sql, _params = rows.annotate(n=_CountRows()).values("n").query.sql_with_params()
        subqueries.append(sql)
    adapt = connection.ops.adapt_datetimefield_value
    parts = []
    for low, high in itertools.pairwise(bounds):
        for sql in subqueries:
            parts.append(f"({sql})")
            params += [adapt(low), adapt(high)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)  # the ORM's SQL; values as parameters
        counts = [int(n or 0) for n in cursor.fetchone()]
    return counts[0::2][:days], counts[1::2][:days]


def _outcomes(start: datetime, end: datetime) -> dict[str, Counter[str]]:
    rows = (
        VerificationSession.objects.order_by()
        .filter(finished_at__gte=start, finished_at__lt=end)
        .values_list("provider", "status", "decision")
        .annotate(n=Count("*"))
        .order_by()
    )
    outcomes: dict[str, Counter[str]] = {}
    for provider, status, decision, n in rows:
        outcomes.setdefault(provider, Counter())[outcome_of(status, decision)] += n
    return dict(sorted(outcomes.items()))


def _medians(start: datetime, end: datetime, providers: list[str]) -> dict[str, Median] | None:
    """The exact median per provider in one query, the middle duration (or the mean of the middle
    two) of each provider's sessions that reached a result. ``providers``: the aliases with sessions
    finished in the period. On PostgreSQL its own ``percentile_cont(0.5)``
    (``_medians_postgresql``); on SQLite each provider's middle rows by ``LIMIT``/``OFFSET``
    (``_medians_sqlite``); elsewhere window functions rank the durations (``_medians_ranked``).
    ``None`` on a database without its duration expression here."""
    duration = _DURATION_SQL.get(connection.vendor)
    if duration is None:
        return None
    if connection.vendor == "postgresql":
        return _medians_postgresql(start, end, duration, providers)
    if connection.vendor == "sqlite":
        return _medians_sqlite(start, end, duration, providers)
    return _medians_ranked(start, end, duration)


def _durations_sql(duration: str) -> str:
    """Provider ``p`` and seconds ``d`` of the sessions that reached a result in the period (four
    parameters: start, end, the two statuses)."""
    table = connection.ops.quote_name(VerificationSession._meta.db_table)
    return (
        f"SELECT {_q('provider')} AS p, {duration} AS d FROM {table} "  # noqa: S608 - identifiers and our expression
        f"WHERE {_q('finished_at')} >= %s AND {_q('finished_at')} < %s AND {_q('status')} IN (%s, %s)"
    )


def _medians_sqlite(start: datetime, end: datetime, duration: str, providers: list[str]) -> dict[str, Median]:
    """Per provider, its count and the average of its middle one or two durations in order
    (``LIMIT 2 - n % 2 OFFSET (n - 1) / 2``), the counts taken in the same statement (so from the
    same snapshot: exact whatever commits meanwhile). The durations are read once (a CTE used
    several times is materialised), and each provider sorts only its own; ranking them all with
    window functions cost SQLite twice as much (docs/performance.rst)."""
    # A first column whatever the providers, so the statement runs (and is counted) even with none.
    columns: list[str] = ["(SELECT SUM(n) FROM counts)"]
    params: list[Any] = []
    for alias in providers:
        # A provider whose finished sessions all went without a result has no row in ``counts``.
        count = "COALESCE((SELECT n FROM counts WHERE p = %s), 0)"
        columns.append(
            f"(SELECT AVG(d) FROM (SELECT d FROM durations WHERE p = %s ORDER BY d "  # noqa: S608 - no values
            f"LIMIT 2 - {count} %% 2 OFFSET ({count} - 1) / 2)), {count}"
        )
        params += [alias] * 4
    sql = (
        f"WITH durations AS ({_durations_sql(duration)}), "  # noqa: S608 - identifiers and our expression
        "counts AS (SELECT p, COUNT(*) AS n FROM durations GROUP BY p) "
        f"SELECT {', '.join(columns)}"
    )
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(sql, [adapt(start), adapt(end), Status.DONE.value, Status.FAILED.value, *params])
        return _medians_of_row(cursor.fetchone(), providers)


def _medians_ranked(start: datetime, end: datetime, duration: str) -> dict[str, Median]:
    """Each provider's durations ranked, and the middle one (or the mean of the middle two) kept —
    ``2 * rank`` falls between ``n`` and ``n + 2`` only for those. Both windows are ordered alike,
    so the rows are sorted once. For a database whose ``LIMIT`` takes no expression (MySQL)."""
    sql = (
        f"SELECT p, AVG(d), MAX(n) FROM ("  # noqa: S608
        f"SELECT p, d, ROW_NUMBER() OVER (PARTITION BY p ORDER BY d) AS r, COUNT(*) OVER (PARTITION BY p ORDER BY d "
        f"ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS n "
        f"FROM ({_durations_sql(duration)}) durations"
        f") ranked WHERE 2 * r BETWEEN n AND n + 2 GROUP BY p ORDER BY p"
    )
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(sql, [adapt(start), adapt(end), Status.DONE.value, Status.FAILED.value])
        return {alias: Median(seconds=float(seconds), count=int(n)) for alias, seconds, n in cursor.fetchall()}


def _medians_postgresql(start: datetime, end: datetime, duration: str, providers: list[str]) -> dict[str, Median]:
    """``percentile_cont(0.5)`` and a count per provider, each ``FILTER``ed to its alias, in one
    pass without ``GROUP BY``: each median sorts its own provider's durations in memory, where a
    ``GROUP BY provider`` sorted every row by provider first (on disk, at a million sessions)."""
    table = connection.ops.quote_name(VerificationSession._meta.db_table)
    provider = _q("provider")
    columns: list[str] = ["COUNT(*)"]
    params: list[Any] = []
    for alias in providers:
        columns.append(f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {duration}) FILTER (WHERE {provider} = %s)")
        columns.append(f"COUNT(*) FILTER (WHERE {provider} = %s)")
        params += [alias, alias]
    sql = (
        f"SELECT {', '.join(columns)} FROM {table} "  # noqa: S608 - identifiers and our expressions only
        f"WHERE {_q('finished_at')} >= %s AND {_q('finished_at')} < %s AND {_q('status')} IN (%s, %s)"
    )
    params += [start, end, Status.DONE.value, Status.FAILED.value]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return _medians_of_row(cursor.fetchone(), providers)


def _medians_of_row(row: Any, providers: list[str]) -> dict[str, Median]:
    """The one row of a per-provider median query: after its first column, each provider's median
    seconds and count in ``providers``' order; a provider with no result is left out."""
    medians = {}
    for index, alias in enumerate(providers):
        seconds, count = row[1 + 2 * index], row[2 + 2 * index]
        if count:
            medians[alias] = Median(seconds=float(seconds), count=int(count))
    return medians


def _q(column: str) -> str:
    return connection.ops.quote_name(column)


def _abandoned(start: datetime, end: datetime) -> dict[str, Counter[str]]:
    rows = (
        VerificationEvent.objects.order_by()
        .filter(applied=True, new_status__in=[s.value for s in ABANDONED_AS], created_at__gte=start, created_at__lt=end)
        .values_list("old_status", "new_status")
        .annotate(n=Count("*"))
        .order_by()
    )
    abandoned: dict[str, Counter[str]] = {str(step): Counter() for step in ABANDONED_AT}
    for old_status, new_status, n in rows:
        abandoned.setdefault(old_status, Counter())[new_status] += n
    return abandoned


__all__ = ["ABANDONED_AS", "ABANDONED_AT", "DAYS", "OUTCOMES", "Median", "Overview", "outcome_of", "overview", "period"]

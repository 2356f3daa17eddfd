"""What keeps the lists fast and readable at any size: NUL-safe query strings, the provider and
validity filters, a capped count, the date drill-down by index probes (``DateDrillDown``, sessions
and events), indexed search, and the session summary of the filtered list, counted once for a
while (``SessionListing``)."""

from __future__ import annotations

import copy
import functools
import hashlib
import re
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.paginator import Paginator
from django.db.models import BooleanField, Case, Count, Exists, Q, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, QueryDict
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .. import conf
from ..models import VerificationSession
from .display import VALIDITY, Decision, Status

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

    # Mixins of the ModelAdmins (sessions and events): typed as the ModelAdmin they are mixed into.
    _AdminBase = admin.ModelAdmin[Any]
else:
    _AdminBase = object


class RefusesNulParameters(_AdminBase):
    """A 400 for a list URL with a NUL in its query string: Django's list filters hand
    ``?status=%00`` straight to the database, and PostgreSQL refuses NUL in a parameter (a 500)."""

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if any("\x00" in key or any("\x00" in value for value in values) for key, values in request.GET.lists()):
            return HttpResponseBadRequest(_("A query parameter contains a NUL character."))
        return super().changelist_view(request, extra_context)


class ProviderFilter(admin.SimpleListFilter):
    """Providers from settings, not ``SELECT DISTINCT provider`` over the whole table."""

    title = _("provider")
    parameter_name = "provider"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(alias, alias) for alias in conf.providers()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(provider=self.value()) if self.value() else queryset


class QueueFilter(admin.SimpleListFilter):
    """The review queue: the sessions the current reviewer claimed (``assign_review``), and those
    waiting for review that nobody has claimed yet."""

    title = _("review queue")
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, StrOrPromise]]:
        return [("mine", _("My queue")), ("unassigned", _("Awaiting review, unassigned"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "mine":
            return queryset.filter(assigned_to=request.user.pk)
        if self.value() == "unassigned":
            return queryset.filter(decision="review", assigned_to=None)
        return queryset


class ValidityFilter(admin.BooleanFieldListFilter):
    """``valid`` in the words of the list's column (``VALIDITY``: valid, refused, not judged)
    instead of Yes, No and Unknown; the same query parameters as Django's own."""

    def choices(self, changelist: Any) -> Any:
        words = [_("All"), VALIDITY[True], VALIDITY[False], VALIDITY[None]]
        for choice, word in zip(super().choices(changelist), words, strict=False):
            count = re.search(r" \(\d+\)$", str(choice["display"]))  # Django 5's "Show counts"
            yield {**choice, "display": f"{word}{count.group(0)}" if count else word}


class CappedCountPaginator(Paginator):
    """Counts at most ``CAP`` + 1 rows (``COUNT(*)`` over a ``LIMIT``): a page of a 10-million-row
    table costs what a page of a 10-thousand-row one does. Past the cap, filter or drill down."""

    CAP = 1_000

    @cached_property
    def count(self) -> int:
        rows = cast("QuerySet[Any]", self.object_list)  # the admin paginates its change list's queryset
        return min(rows.order_by()[: self.CAP + 1].count(), self.CAP)


def list_context(response: HttpResponse) -> dict[str, Any] | None:
    """The context of a list page about to be rendered, the change list in it (``cl``); None for a
    redirect, an action's page or anything else ``changelist_view`` may answer."""
    if isinstance(response, TemplateResponse) and not response.is_rendered:
        context = response.context_data
        if context and "cl" in context:
            return context
    return None


def changelist_of(response: HttpResponse) -> ChangeList | None:
    """The change list of a list page about to be rendered (``list_context``), or None."""
    context = list_context(response)
    return context["cl"] if context is not None else None


def _local(year: int, month: int = 1, day: int = 1) -> datetime:
    start = datetime(year, month, day)
    return timezone.make_aware(start) if settings.USE_TZ else start


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def periods_with_data(queryset: QuerySet, field: str, periods: list[tuple[datetime, datetime]]) -> list[bool]:
    """Whether each ``[start, end)`` period holds a row of ``queryset``, in one query: an index probe
    (``EXISTS … LIMIT 1``) per period, never a scan of the rows in it."""
    if not periods:
        return []
    base = queryset.order_by()
    probes = {
        f"p{index}": Exists(base.filter(**{f"{field}__gte": start, f"{field}__lt": end}))
        for index, (start, end) in enumerate(periods)
    }
    row = base.annotate(**probes).values(*probes)[:1]
    found = next(iter(row), None)  # no row: the queryset is empty
    return [bool(found and found[name]) for name in probes]


def month_links(request: HttpRequest, field: str, queryset: QuerySet | None = None) -> dict[str, Any]:
    """The date drill-down (years → months → days) showing only the periods of ``queryset`` (the
    filtered list) that have rows, found by index probes: the stock one runs ``SELECT DISTINCT
    date_trunc(…)`` over every row of the year. Month names are Django's, translated. Without a
    queryset, every period of the calendar is offered."""
    params = request.GET
    year, month, day = (params.get(f"{field}__{part}") for part in ("year", "month", "day"))
    today = timezone.localdate()

    def link(label: str, **lookup: int) -> dict[str, str]:
        query = {k: v for k, v in params.items() if not k.startswith(f"{field}__") and k != "p"}
        query.update({f"{field}__{key}": str(value) for key, value in lookup.items()})
        return {"label": label, "url": "?" + urlencode(query)}

    def present(candidates: list[tuple[dict[str, int], datetime, datetime]]) -> list[dict[str, int]]:
        if queryset is None:
            return [lookup for lookup, _start, _end in candidates]
        found = periods_with_data(queryset, field, [(start, end) for _lookup, start, end in candidates])
        return [lookup for (lookup, _start, _end), has_rows in zip(candidates, found, strict=True) if has_rows]

    back = None
    try:
        if year and year.isdigit() and month and month.isdigit() and 1 <= int(month) <= 12:
            y, m = int(year), int(month)
            candidates = [({"day": d.day}, _local(d.year, d.month, d.day), _local(*_next_day(d))) for d in _days(y, m)]
            choices = [link(str(found["day"]), year=y, month=m, day=found["day"]) for found in present(candidates)]
            if day:  # one day shown: back to its month
                back = link(f"\u2039 {date_format(date(y, m, 1), 'YEAR_MONTH_FORMAT')}", year=y, month=m)
            else:
                back = link(f"\u2039 {y}", year=y)
        elif year and year.isdigit():
            y = int(year)
            candidates = [({"month": m}, _local(y, m), _local(*_next_month(y, m))) for m in range(1, 13)]
            choices = [
                link(date_format(date(y, found["month"], 1), "M"), year=y, month=found["month"])
                for found in present(candidates)
            ]
            back = link(f"\u2039 {_('All dates')}")
            back["url"] = "?" + urlencode({k: v for k, v in params.items() if not k.startswith(f"{field}__")})
        else:
            first, last = today.year - 2, today.year
            if queryset is not None:
                ordered = queryset.order_by(field).values_list(field, flat=True)
                oldest, newest = ordered.first(), ordered.reverse().first()
                if oldest is None or newest is None:
                    return {"back": None, "choices": []}
                first, last = _year_of(oldest), _year_of(newest)
                first = max(first, last - MAX_YEARS + 1)  # a stray date far back: not a probe a year
            recent = [(today.year, today.month)]
            for _step in range(2):
                previous = recent[-1]
                recent.append((previous[0] - 1, 12) if previous[1] == 1 else (previous[0], previous[1] - 1))
            candidates = [({"year": y}, _local(y), _local(y + 1)) for y in range(first, last + 1)]
            candidates += [({"year": y, "month": m}, _local(y, m), _local(*_next_month(y, m))) for y, m in recent]
            choices = [
                link(date_format(date(found["year"], found["month"], 1), "YEAR_MONTH_FORMAT"), **found)
                if "month" in found
                else link(str(found["year"]), **found)
                for found in present(candidates)
            ]
    except (OverflowError, ValueError):  # a year at the end of the calendar: nothing to drill into
        return {"back": back, "choices": []}
    return {"back": back, "choices": choices}


#: The most years the drill-down offers (the latest ones with data).
MAX_YEARS = 25


def _days(year: int, month: int) -> list[date]:
    first = date(year, month, 1)
    following = date(*_next_month(year, month), 1)
    return [first + timedelta(days=offset) for offset in range((following - first).days)]


def _next_day(day: date) -> tuple[int, int, int]:
    following = day + timedelta(days=1)  # local midnight to local midnight, whatever the DST
    return following.year, following.month, following.day


def _year_of(value: datetime | date) -> int:
    if isinstance(value, datetime) and timezone.is_aware(value):
        return timezone.localtime(value).year
    return value.year


class DateDrillDown(_AdminBase):
    """The date drill-down of a change list with ``date_hierarchy``, from ``month_links`` over the
    filtered rows (``vl_dates`` in the template; ``admin/verification_link/date_drilldown.html``
    renders it instead of Django's own)."""

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        context = list_context(response)
        if context is not None and self.date_hierarchy:
            context["vl_dates"] = month_links(request, self.date_hierarchy, context["cl"].queryset)
        return response


class SessionListing(DateDrillDown):
    """The change list of ``VerificationSessionAdmin``: its title, search, and the summary above it —
    counts of the filtered list for the last 24 h and 7 days, each a link that keeps the other
    filters."""

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        title = {}
        if IS_POPUP_VAR not in request.GET:  # read-only rows: staff view sessions here, never edit them
            title = {"title": gettext("Select %s to view") % self.opts.verbose_name}
        response = super().changelist_view(request, {**title, **(extra_context or {})})
        context = list_context(response)
        if context is not None:
            summary, counted_at = self.cached_summary(request, context["cl"])
            context.update(
                vl_summary=summary,
                vl_summary_counted_at=counted_at,
                vl_summary_filtered=bool(self._summary_key_params(request)),
            )
        return response

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        """Users first (one small query on auth_user), then the sessions by indexed columns:
        exact, case-sensitive handles instead of ``UPPER(col) = UPPER(…)`` and no join in the count."""
        term = search_term.replace("\x00", "").strip()  # PostgreSQL refuses NUL in parameters
        if not term:
            return queryset, False
        User = get_user_model()  # the model of VerificationSession.user (AUTH_USER_MODEL)
        username = User.USERNAME_FIELD
        users = User.objects.filter(Q(**{f"{username}__icontains": term}) | Q(email__icontains=term))
        user_ids = list(users.values_list("pk", flat=True)[:500])
        matches = Q(token=term) | Q(external_id=term) | Q(reference=term)
        if user_ids:
            matches |= Q(user__in=user_ids)
        return queryset.filter(matches), False

    #: Seconds the counts above the list are reused (Django's default cache), per set of filters.
    #: Counting the last 7 days costs in proportion to the week's sessions — about 8 ms at 11,600 —
    #: on every page view, where the list itself costs the same at any size; 0 counts on every request.
    summary_cache_seconds = 30

    def cached_summary(
        self, request: HttpRequest | None = None, cl: ChangeList | None = None
    ) -> tuple[list[dict[str, Any]], datetime]:
        """``summary()`` — of the list as ``cl`` filters it, when given — and when it was counted,
        reused for ``summary_cache_seconds``."""
        count: Callable[[], dict[str, dict[str, int]]]
        if request is None or cl is None:
            count, params, filters = self._summary_counts, QueryDict(), []
        else:
            params, filters = request.GET, self._summary_key_params(request)
            count = functools.partial(self._faceted_counts, request, cl)

            if request.GET.get(QueueFilter.parameter_name) == "mine":
                filters.append(("user", str(request.user.pk)))  # "my queue" differs per reviewer
        if not self.summary_cache_seconds:
            return self._summary_rows(count(), params), timezone.now()
        digest = hashlib.sha256(urlencode(filters).encode()).hexdigest()[:32]
        key = f"verification_link:admin-summary:{self.opts.label_lower}:{digest}"
        cached = cache.get(key)
        if cached is None:
            cached = (count(), timezone.now())
            cache.set(key, cached, self.summary_cache_seconds)
        counts, counted_at = cached
        return self._summary_rows(counts, params), counted_at

    @staticmethod
    def _summary_key_params(request: HttpRequest) -> list[tuple[str, str]]:
        """The query parameters that change the counts (not the page, the sort or the drill-down's
        own links), in a stable order."""
        return sorted((k, v) for k, values in request.GET.lists() for v in values if k not in IGNORED_FOR_SUMMARY)

    @classmethod
    def summary(cls) -> list[dict[str, Any]]:
        """Counts per status and decision for the last 24 h and 7 days, in one query."""
        return cls._summary_rows(cls._summary_counts())

    @staticmethod
    def _grouped(queryset: QuerySet | None = None) -> list[tuple[str, str, bool, int]]:
        """One ``GROUP BY`` over the 7-day range of the created_at index. (A ``COUNT(…) FILTER`` per
        figure — 24 aggregates evaluated on every row — cost twice as much.)"""
        now = timezone.now()
        queryset = VerificationSession.objects.all() if queryset is None else queryset
        return list(
            queryset.order_by()
            .filter(created_at__gte=now - timedelta(days=7))
            .annotate(
                last_day=Case(
                    When(created_at__gte=now - timedelta(hours=24), then=Value(True)),
                    default=Value(False),
                    output_field=BooleanField(),
                )
            )
            .values_list("status", "decision", "last_day")
            .annotate(count=Count("*"))
            .order_by()
        )

    @classmethod
    def _summary_counts(cls, queryset: QuerySet | None = None) -> dict[str, dict[str, int]]:
        """The counts of ``queryset`` (default: every session), in one query."""
        rows = cls._grouped(queryset)
        return cls._tally(statuses=rows, decisions=rows, totals=rows)

    @classmethod
    def _faceted_counts(cls, request: HttpRequest, cl: ChangeList) -> dict[str, dict[str, int]]:
        """The counts of the filtered list, as facets: the status counts with every filter but the
        status one (a count is what its link lists), the decision counts likewise. One query, two
        when both a status and a decision are chosen."""
        status, decision = request.GET.get("status__exact"), request.GET.get("decision__exact")
        by_status = cls._grouped(cls._without(request, cl, "status__exact")) if status is not None else None
        by_decision = cls._grouped(cls._without(request, cl, "decision__exact")) if decision is not None else None
        if by_status is not None and by_decision is not None:
            totals = [row for row in by_status if row[0] == status]
            return cls._tally(statuses=by_status, decisions=by_decision, totals=totals)
        if by_status is not None:
            chosen = [row for row in by_status if row[0] == status]
            return cls._tally(statuses=by_status, decisions=chosen, totals=chosen)
        if by_decision is not None:
            chosen = [row for row in by_decision if row[1] == decision]
            return cls._tally(statuses=chosen, decisions=by_decision, totals=chosen)
        rows = cls._grouped(cl.queryset)
        return cls._tally(statuses=rows, decisions=rows, totals=rows)

    @staticmethod
    def _without(request: HttpRequest, cl: ChangeList, parameter: str) -> QuerySet:
        """The list's rows with every filter but the one of ``parameter`` (the list's rows where
        that filter is not on the list). A copy of the change list without the filter's parameters builds the
        queryset, the way Django 5's ``exclude_parameters`` does, so Django 4.2 counts the same."""
        spec = next((spec for spec in cl.filter_specs if parameter in spec.expected_parameters()), None)
        if spec is None:
            return cl.queryset  # not a filter of this list: nothing to leave out
        excluded = set(spec.expected_parameters())
        unfiltered = copy.copy(cl)
        # Django 4.2 filters by ``params``; 5.0+ by ``filter_params`` (the same, as lists).
        for attribute in ("params", "filter_params"):
            if hasattr(cl, attribute):
                kept = {key: value for key, value in getattr(cl, attribute).items() if key not in excluded}
                setattr(unfiltered, attribute, kept)
        return unfiltered.get_queryset(request)

    @staticmethod
    def _tally(
        *, statuses: list[tuple[str, str, bool, int]], decisions: list[tuple[str, str, bool, int]], totals: list
    ) -> dict[str, dict[str, int]]:
        counts: dict[str, Counter[str]] = {"24h": Counter(), "7d": Counter()}
        for rows, key in ((statuses, lambda row: f"s:{row[0]}"), (decisions, lambda row: f"d:{row[1]}")):
            for row in rows:
                for window in ("24h", "7d") if row[2] else ("7d",):
                    counts[window][key(row)] += row[3]
        for _status, _decision, last_day, count in totals:
            for window in ("24h", "7d") if last_day else ("7d",):
                counts[window]["all"] += count
        return {window: dict(counter) for window, counter in counts.items()}

    @staticmethod
    def _summary_rows(counts: dict[str, dict[str, int]], params: QueryDict | None = None) -> list[dict[str, Any]]:
        """The summary's rows: ``statuses`` and ``decisions`` as ``(label, count, value)``, and the
        same as ``cells`` with the link of each count — the list's current filters with that status
        (or decision) chosen instead."""
        params = params if params is not None else QueryDict()

        def cell(label: Any, count: int, parameter: str, value: str | None) -> dict[str, Any]:
            query = params.copy()
            for key in ("p", "e", parameter):
                query.pop(key, None)
            if value is not None:
                query[parameter] = value
            return {
                "label": label,
                "count": count,
                "value": value,
                "url": "?" + query.urlencode(),
                "selected": value is not None and params.get(parameter) == value,
            }

        rows = []
        for window in ("24h", "7d"):
            figures = counts[window]
            statuses = [(label, figures.get(f"s:{value}", 0), value) for value, label in Status.choices]
            decisions = [(label, figures.get(f"d:{value}", 0), value) for value, label in Decision.choices]
            everything = cell(_("all"), figures.get("all", 0), "status__exact", None)
            everything["url"] = "?" + _without_keys(params, ("p", "e", "status__exact", "decision__exact"))
            rows.append(
                {
                    "label": _("Last 24 hours") if window == "24h" else _("Last 7 days"),
                    "total": figures.get("all", 0),
                    "statuses": statuses,
                    "decisions": decisions,
                    "total_cell": everything,
                    "cells": [cell(label, n, "status__exact", value) for label, n, value in statuses]
                    + [cell(label, n, "decision__exact", value) for label, n, value in decisions],
                }
            )
        return rows


#: Query parameters that do not change the summary's counts.
IGNORED_FOR_SUMMARY = frozenset({"p", "o", "e", "_changelist_filters"})


def _without_keys(params: QueryDict, keys: tuple[str, ...]) -> str:
    query = params.copy()
    for key in keys:
        query.pop(key, None)
    return query.urlencode()

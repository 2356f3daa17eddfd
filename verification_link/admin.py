"""Staff review in the Django admin.

- Sessions: a fast list (constant queries, no full ``COUNT(*)``, a summary of the last 24 h and 7
  days in one query), a read-only detail with the result made readable and the event timeline, and
  actions — refresh, cancel, approve, reject — that go through the services, singly from the detail
  page and in bulk from the list, each recorded as an event with the staff user.
- Events: a read-only list, linked to sessions.
- Biometric and demographic parts (``SENSITIVE_RESULT_KEYS``), raw bodies and the hand-off link are
  shown only to users with ``verification_link.view_sensitive_result`` — in every page and export.
- Nobody edits ``status``, ``result`` or events by hand: every field is read-only, and the change
  form accepts no POST.
"""

from __future__ import annotations

import calendar
import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import BooleanField, Case, Count, Q, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from . import conf, services
from .exceptions import InvalidTransition, ProviderError
from .framing import forbid_framing
from .jsonbody import parse_json
from .models import VerificationEvent, VerificationSession
from .qr import qr_svg
from .results import REDACTED, can_view_sensitive, check_rows, quality_checks, redact

Status = VerificationSession.Status
Decision = VerificationSession.Decision
# A verdict: replacing one takes a confirmation. ``review`` is the queue waiting for a verdict.
SETTLED_DECISIONS = (Decision.APPROVED, Decision.REJECTED)

STATUS_COLOURS = {
    "CREATED": "#6b7280",
    "CAPTCHA_OK": "#2563eb",
    "IN_PROGRESS": "#2563eb",
    "DONE": "#15803d",
    "FAILED": "#b91c1c",
    "EXPIRED": "#92400e",
    "CANCELED": "#4b5563",
}


def status_badge(status: str, label: str) -> str:
    colour = STATUS_COLOURS.get(status, "#6b7280")
    return format_html(
        '<span style="display:inline-block;padding:1px 8px;border-radius:9px;background:{};color:#fff;'
        'font-size:11px;font-weight:600;white-space:nowrap">{}</span>',
        colour,
        label,
    )


def pretty_json(value: Any) -> str:
    return format_html(
        '<pre style="white-space:pre-wrap;max-height:30em;overflow:auto">{}</pre>',
        json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False),
    )


def pretty_body(body: str) -> str:
    try:
        return pretty_json(parse_json(body))
    except ValueError:
        return format_html('<pre style="white-space:pre-wrap">{}</pre>', body)


# -- the actions --------------------------------------------------------------------------------------


class NoteForm(forms.Form):
    note = forms.CharField(
        label=_("Note"),
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        required=True,
        max_length=2000,
        help_text=_("Why: kept with the decision and in the audit trail."),
    )


class DecisionForm(NoteForm):
    replace = forms.BooleanField(
        label=_("Change the existing decision"),
        required=False,
        help_text=_("Without it, a session that already has another decision keeps it."),
    )


class SessionAction:
    """One staff action, applied to each session through the services.

    ``apply(session, user, note, replace)`` returns the outcome that ``_report`` counts and says:
    ``done``, ``failed``, ``skipped``, or for decisions ``not_completed``, ``decided`` (another
    verdict, not confirmed) and ``already``. ``decision`` is set for the actions that record one.
    """

    def __init__(
        self,
        name: str,
        title: str,
        verb: str,
        apply: Callable[..., str],
        *,
        needs_note: bool = False,
        danger: bool = False,
        decision: str = "",
    ) -> None:
        self.name, self.title, self.verb, self.apply = name, title, verb, apply
        self.needs_note, self.danger, self.decision = needs_note, danger, decision


def decision_refusal(session: VerificationSession, decision: str) -> str | None:
    """Why recording ``decision`` on ``session`` would change nothing, as an outcome key; None when
    it can be recorded (perhaps only with a confirmation: see ``SETTLED_DECISIONS``). The service
    decides again under the row lock; this is what the pages offer and say."""
    if decision == Decision.APPROVED and session.status != Status.DONE:
        return "not_completed"
    if not session.is_final:
        return "skipped"
    if session.decision == decision:
        return "already"
    return None


def _refresh(session: VerificationSession, user: Any, note: str, replace: bool) -> str:
    if session.is_final:
        return "skipped"
    try:
        services.refresh_session(session, source="admin", by=user)
    except ProviderError:
        return "failed"
    return "done"


def _cancel(session: VerificationSession, user: Any, note: str, replace: bool) -> str:
    if session.status == Status.CANCELED:
        return "skipped"
    try:
        services.cancel_session(session, by=user, source="admin")
    except InvalidTransition:
        return "skipped"
    return "done"


def _review(decision: str) -> Callable[..., str]:
    def apply(session: VerificationSession, user: Any, note: str, replace: bool) -> str:
        already = session.decision == decision
        try:
            services.review_session(session, decision=decision, reviewer=user, note=note, replace=replace)
        except InvalidTransition:
            # Say why from the state that made the service refuse (it may have changed since the
            # page was shown): not completed, still open, or decided otherwise and not confirmed.
            session.refresh_from_db(fields=["status", "decision"])
            return decision_refusal(session, decision) or "decided"
        return "already" if already else "done"  # the service records a repeated decision once

    return apply


ACTIONS = {
    action.name: action
    for action in [
        SessionAction("refresh", _("Refresh from provider"), _("refreshed"), _refresh),
        SessionAction("cancel", _("Cancel"), _("canceled"), _cancel, danger=True),
        SessionAction(
            "approve",
            _("Approve"),
            _("approved"),
            _review(Decision.APPROVED),
            needs_note=True,
            decision=Decision.APPROVED,
        ),
        SessionAction(
            "reject",
            _("Reject"),
            _("rejected"),
            _review(Decision.REJECTED),
            needs_note=True,
            danger=True,
            decision=Decision.REJECTED,
        ),
    ]
}


# -- what keeps the list fast at any size --------------------------------------------------------------


class RefusesNulParameters:
    """A 400 for a list URL with a NUL in its query string: Django's list filters hand
    ``?status=%00`` straight to the database, and PostgreSQL refuses NUL in a parameter (a 500)."""

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if any("\x00" in key or any("\x00" in value for value in values) for key, values in request.GET.lists()):
            return HttpResponseBadRequest(_("A query parameter contains a NUL character."))
        return super().changelist_view(request, extra_context)  # type: ignore[misc]


class ProviderFilter(admin.SimpleListFilter):
    """Providers from settings, not ``SELECT DISTINCT provider`` over the whole table."""

    title = _("provider")
    parameter_name = "provider"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(alias, alias) for alias in conf.providers()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(provider=self.value()) if self.value() else queryset


class CappedCountPaginator(Paginator):
    """Counts at most ``CAP`` + 1 rows (``COUNT(*)`` over a ``LIMIT``): a page of a 10-million-row
    table costs what a page of a 10-thousand-row one does. Past the cap, filter or drill down."""

    CAP = 1_000

    @cached_property
    def count(self) -> int:
        return min(self.object_list.order_by()[: self.CAP + 1].count(), self.CAP)


def month_links(request: HttpRequest, field: str) -> dict[str, Any]:
    """The date drill-down (year → month → day) computed from the calendar, with no query: the
    stock one runs ``SELECT DISTINCT date_trunc(…)`` over every row of the year."""
    params = request.GET
    year, month = params.get(f"{field}__year"), params.get(f"{field}__month")
    today = timezone.localdate()

    def link(label: str, **lookup: int) -> dict[str, str]:
        query = {k: v for k, v in params.items() if not k.startswith(f"{field}__") and k != "p"}
        query.update({f"{field}__{key}": str(value) for key, value in lookup.items()})
        return {"label": label, "url": "?" + urlencode(query)}

    back = None
    if year and year.isdigit() and month and month.isdigit() and 1 <= int(month) <= 12:
        y, m = int(year), int(month)
        days = calendar.monthrange(y, m)[1]
        choices = [link(str(day), year=y, month=m, day=day) for day in range(1, days + 1)]
        back = link(f"\u2039 {y}", year=y)
    elif year and year.isdigit():
        y = int(year)
        choices = [link(calendar.month_abbr[m], year=y, month=m) for m in range(1, 13)]
        back = link(f"\u2039 {_('All dates')}")
        back["url"] = "?" + urlencode({k: v for k, v in params.items() if not k.startswith(f"{field}__")})
    else:
        choices = [link(str(y), year=y) for y in range(today.year - 2, today.year + 1)]
        recent = [(today.year, today.month)]
        for _step in range(2):
            previous = recent[-1]
            recent.append((previous[0] - 1, 12) if previous[1] == 1 else (previous[0], previous[1] - 1))
        choices += [link(f"{calendar.month_abbr[m]} {y}", year=y, month=m) for y, m in recent]
    return {"back": back, "choices": choices}


# -- sessions -------------------------------------------------------------------------------------------


@admin.register(VerificationSession)
class VerificationSessionAdmin(RefusesNulParameters, admin.ModelAdmin):
    list_display = (
        "short_id",
        "user",
        "provider",
        "status_column",
        "next_step",
        "decision",
        "created_at",
        "expires_or_finished",
    )
    list_display_links = ("short_id",)
    list_filter = ("status", "decision", ProviderFilter, ("created_at", admin.DateFieldListFilter))
    search_fields = ("user__username", "user__email", "=token", "=external_id", "=reference")
    search_help_text = _("Username or e-mail (contains), or an exact token, external id or reference.")
    list_select_related = ("user",)
    date_hierarchy = "created_at"  # the filtering; the drill-down itself is rendered by month_links()
    show_full_result_count = False  # no second COUNT(*) of the whole table
    paginator = CappedCountPaginator
    list_per_page = 25  # a review queue: a page that renders fast, filters to narrow it
    ordering = ("-created_at",)
    actions = ["refresh_selected", "cancel_selected", "approve_selected", "reject_selected", "export_json"]
    change_form_template = "admin/verification_link/verificationsession/change_form.html"
    change_list_template = "admin/verification_link/verificationsession/change_list.html"
    action_template = "admin/verification_link/verificationsession/action_confirmation.html"

    # -- read-only, whoever asks ----------------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # sessions start at a provider, through start_verification()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [name for fieldset in self.get_fieldsets(request, obj) for name in fieldset[1]["fields"]]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[tuple[Any, dict[str, Any]]]:
        sensitive = can_view_sensitive(request.user)
        fieldsets: list[tuple[Any, dict[str, Any]]] = [
            (
                None,
                {
                    "fields": [
                        "id",
                        "user",
                        "provider",
                        "status_column",
                        "next_step",
                        "scopes",
                        "created_at",
                        "expires_at",
                        "finished_at",
                    ]
                },
            ),
            (_("Decision"), {"fields": ["decision", "reviewed_by", "reviewed_at", "review_note"]}),
            (
                _("Result"),
                {
                    "fields": [
                        "result_checks",
                        "result_quality",
                        "raw_result_full" if sensitive else "raw_result_redacted",
                    ]
                },
            ),
        ]
        if self._shows_handoff(request, obj):
            fieldsets.append((_("Hand-off (one-time link: a secret)"), {"fields": ["handoff"]}))
        fieldsets += [
            (_("Provider"), {"fields": ["external_id", "reference", "metadata"], "classes": ["collapse"]}),
            (
                _("Polling"),
                {"fields": ["next_poll_at", "poll_attempts", "last_polled_at", "purged_at"], "classes": ["collapse"]},
            ),
            (_("Event timeline"), {"fields": ["timeline_full" if sensitive else "timeline_redacted"]}),
        ]
        return fieldsets

    @staticmethod
    def _shows_handoff(request: HttpRequest, obj: VerificationSession | None) -> bool:
        return obj is not None and not obj.is_final and bool(obj.url) and can_view_sensitive(request.user)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if request.method == "POST":
            raise PermissionDenied  # nothing here is edited by hand; actions have their own views
        obj = self.get_object(request, object_id) if object_id else None
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "vl_actions": self._actions_for(request, obj) if obj is not None else [],
        }
        response = super().changeform_view(request, object_id, form_url, extra_context)
        if self._shows_handoff(request, obj):
            forbid_framing(response)  # the page shows the one-time link and its QR code
        return response

    def _actions_for(self, request: HttpRequest, obj: VerificationSession) -> list[dict[str, Any]]:
        """The detail page's buttons: only what can change something (no Approve on a session that
        is not completed or already approved), and one replacing a verdict says so."""
        if not self.has_change_permission(request, obj):
            return []
        if not obj.is_final:
            available = [ACTIONS["refresh"], ACTIONS["cancel"]]
        else:
            available = [a for a in (ACTIONS["approve"], ACTIONS["reject"]) if not decision_refusal(obj, a.decision)]
        buttons = []
        for action in available:
            title = str(action.title)
            if action.decision and obj.decision in SETTLED_DECISIONS:
                title = gettext("%(action)s (changes the decision: %(current)s)") % {
                    "action": action.title,
                    "current": obj.get_decision_display(),
                }
            buttons.append({"title": title, "url": reverse(f"admin:{self._url_prefix()}_{action.name}", args=[obj.pk])})
        return buttons

    def _url_prefix(self) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}"

    # -- list ----------------------------------------------------------------------------------------------

    def action_checkbox(self, obj: VerificationSession) -> str:
        """Django's row checkbox, written out instead of rendered through the form-widget templates:
        that cost as much as the rest of the row (``benchmarks/admin.py``; same markup, same JS)."""
        label = format_html(gettext("Select this object for an action - {}"), str(obj))
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            ACTION_CHECKBOX_NAME,
            obj.pk,
            label,
        )

    if hasattr(admin.ModelAdmin.action_checkbox, "short_description"):  # Django 4.2: the header's toggle
        action_checkbox.short_description = admin.ModelAdmin.action_checkbox.short_description

    @admin.display(description=_("id"), ordering="id")
    def short_id(self, obj: VerificationSession) -> str:
        return obj.short_id

    @admin.display(description=_("status"), ordering="status")
    def status_column(self, obj: VerificationSession) -> str:
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description=_("expires / finished"), ordering="expires_at")
    def expires_or_finished(self, obj: VerificationSession) -> Any:
        return obj.finished_at if obj.is_final else obj.expires_at

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        summary, counted_at = self.cached_summary()
        context = {
            "vl_summary": summary,
            "vl_summary_counted_at": counted_at,
            "vl_dates": month_links(request, self.date_hierarchy),
        }
        return super().changelist_view(request, {**(extra_context or {}), **context})

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        """Users first (one small query on auth_user), then the sessions by indexed columns:
        exact, case-sensitive handles instead of ``UPPER(col) = UPPER(…)`` and no join in the count."""
        term = search_term.replace("\x00", "").strip()  # PostgreSQL refuses NUL in parameters
        if not term:
            return queryset, False
        User = VerificationSession._meta.get_field("user").related_model
        username = User.USERNAME_FIELD
        users = User.objects.filter(Q(**{f"{username}__icontains": term}) | Q(email__icontains=term))
        user_ids = list(users.values_list("pk", flat=True)[:500])
        matches = Q(token=term) | Q(external_id=term) | Q(reference=term)
        if user_ids:
            matches |= Q(user__in=user_ids)
        return queryset.filter(matches), False

    #: Seconds the counts above the list are reused (Django's default cache). Counting the last 7
    #: days costs in proportion to the week's sessions — about 8 ms at 11,600 — on every page view,
    #: where the list itself costs the same at any size; 0 counts on every request.
    summary_cache_seconds = 30

    def cached_summary(self) -> tuple[list[dict[str, Any]], datetime]:
        """``summary()`` and when it was counted, reused for ``summary_cache_seconds``."""
        if not self.summary_cache_seconds:
            return self.summary(), timezone.now()
        key = f"verification_link:admin-summary:{self.opts.label_lower}"
        cached = cache.get(key)
        if cached is None:
            cached = (self._summary_counts(), timezone.now())
            cache.set(key, cached, self.summary_cache_seconds)
        counts, counted_at = cached
        return self._summary_rows(counts), counted_at

    @classmethod
    def summary(cls) -> list[dict[str, Any]]:
        """Counts per status and decision for the last 24 h and 7 days, in one query."""
        return cls._summary_rows(cls._summary_counts())

    @staticmethod
    def _summary_counts() -> dict[str, dict[str, int]]:
        """One ``GROUP BY`` over the 7-day range of the created_at index. (A ``COUNT(…) FILTER`` per
        figure — 24 aggregates evaluated on every row — cost twice as much.)"""
        now = timezone.now()
        groups = (
            VerificationSession.objects.filter(created_at__gte=now - timedelta(days=7))
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
        counts: dict[str, Counter[str]] = {"24h": Counter(), "7d": Counter()}
        for status, decision, last_day, count in groups:
            for window in ("24h", "7d") if last_day else ("7d",):
                counts[window].update({"all": count, f"s:{status}": count, f"d:{decision}": count})
        return {window: dict(counter) for window, counter in counts.items()}

    @staticmethod
    def _summary_rows(counts: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
        return [
            {
                "label": _("Last 24 hours") if window == "24h" else _("Last 7 days"),
                "total": counts[window].get("all", 0),
                "statuses": [(label, counts[window].get(f"s:{value}", 0), value) for value, label in Status.choices],
                "decisions": [(label, counts[window].get(f"d:{value}", 0), value) for value, label in Decision.choices],
            }
            for window in ("24h", "7d")
        ]

    # -- detail: the result for a human, the timeline --------------------------------------------------

    @admin.display(description=_("checks"))
    def result_checks(self, obj: VerificationSession) -> str:
        rows = check_rows(obj)
        if not rows:
            return "—"
        verdicts = {
            True: ("✔", _("passed"), "#15803d"),
            False: ("✘", _("failed"), "#b91c1c"),
            None: ("?", _("missing"), "#92400e"),
        }
        body = format_html_join(
            "",
            '<tr><td>{}</td><td style="color:{}">{} {}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    row.scope,
                    verdicts[row.passed][2],
                    verdicts[row.passed][0],
                    verdicts[row.passed][1],
                    "" if row.score is None else f"{row.score:.4f}",
                    row.detail,
                )
                for row in rows
            ),
        )
        return format_html(
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead><tbody>{}</tbody></table>",
            _("check"),
            _("verdict"),
            _("score"),
            body,
        )

    @admin.display(description=_("quality"))
    def result_quality(self, obj: VerificationSession) -> str:
        checks = quality_checks(obj.result)
        if not checks:
            return "—"
        return format_html_join(
            "",
            '<span style="display:inline-block;margin:0 6px 4px 0;padding:1px 6px;border-radius:4px;{}">{}: {}</span>',
            (
                (
                    "background:#fee2e2;color:#991b1b;font-weight:600"
                    if fine is False
                    else "background:#f3f4f6;color:#111",
                    name + (" ✘" if fine is False else ""),
                    value,
                )
                for name, fine, value in checks
            ),
        )

    @admin.display(description=_("raw result"))
    def raw_result_full(self, obj: VerificationSession) -> str:
        return self._folded(pretty_json(obj.result or {}))

    @admin.display(description=_("raw result"))
    def raw_result_redacted(self, obj: VerificationSession) -> str:
        shown = redact(obj.result, sensitive=False, provider=obj.provider)
        # Not even the names of the hidden parts: they say what kind of data the person gave.
        note = format_html("<p>{}</p>", REDACTED) if shown != (obj.result or {}) else ""
        return self._folded(format_html("{}{}", note, pretty_json(shown)))

    @staticmethod
    def _folded(html: str) -> str:
        return format_html("<details><summary>{}</summary>{}</details>", _("show JSON"), html)

    @admin.display(description=_("link"))
    def handoff(self, obj: VerificationSession) -> str:
        if obj.is_final or not obj.url:
            return "—"
        qr = mark_safe(qr_svg(obj.url))  # noqa: S308  (qrcode writes path data only, no text)
        return format_html(
            '<p><a href="{}" rel="noreferrer">{}</a></p>'
            '<div class="vl-qr" style="width:180px;background:#fff">{}</div>',
            obj.url,
            obj.url,
            qr,
        )

    @admin.display(description=_("events"))
    def timeline_full(self, obj: VerificationSession) -> str:
        return self._timeline(obj, sensitive=True)

    @admin.display(description=_("events"))
    def timeline_redacted(self, obj: VerificationSession) -> str:
        return self._timeline(obj, sensitive=False)

    def _timeline(self, obj: VerificationSession, *, sensitive: bool) -> str:
        events = list(obj.events.select_related("actor").order_by("created_at", "id"))
        if not events:
            return "—"
        rows = []
        for event in events:
            change = f"{event.old_status or '·'} → {event.new_status}" if event.new_status else ""
            body = ""
            if event.body:
                body = (
                    format_html("<details><summary>{}</summary>{}</details>", _("raw body"), pretty_body(event.body))
                    if sensitive
                    else REDACTED
                )
            rows.append(
                format_html(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    timezone.localtime(event.created_at).strftime("%Y-%m-%d %H:%M:%S"),
                    event.get_kind_display(),
                    event.source,
                    change,
                    {True: "✔", False: "✘", None: ""}[event.valid] + (" " + _("applied") if event.applied else ""),
                    event.actor or "",
                    event.error,
                    body,
                )
            )
        header = format_html_join(
            "",
            "<th>{}</th>",
            (
                (h,)
                for h in (_("time"), _("kind"), _("source"), _("status"), _("valid"), _("by"), _("error"), _("body"))
            ),
        )
        body = format_html_join("", "{}", ((row,) for row in rows))
        return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", header, body)

    # -- actions, in bulk and singly -------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        prefix = self._url_prefix()
        return [
            path(
                f"<path:object_id>/{name}/",
                self.admin_site.admin_view(self._single_action(name)),
                name=f"{prefix}_{name}",
            )
            for name in ACTIONS
        ] + super().get_urls()

    def _single_action(self, name: str) -> Callable[..., HttpResponse]:
        def view(request: HttpRequest, object_id: str) -> HttpResponse:
            obj = get_object_or_404(VerificationSession, pk=object_id)
            if not self.has_change_permission(request, obj):
                raise PermissionDenied
            back = HttpResponseRedirect(reverse(f"admin:{self._url_prefix()}_change", args=[obj.pk]))
            action = ACTIONS[name]
            refusal = decision_refusal(obj, action.decision) if action.decision else None
            if refusal:  # not offered on the page (a stale page, a typed URL): say why, ask nothing
                self._report(request, action, Counter({refusal: 1}))
                return back
            queryset = VerificationSession.objects.filter(pk=obj.pk)
            return self._confirm_and_apply(request, queryset, action, single=True) or back

        return view

    def _confirm_and_apply(
        self, request: HttpRequest, queryset: QuerySet, action: SessionAction, *, single: bool = False
    ) -> HttpResponse | None:
        """A confirmation page (with a required note for decisions, and a warning and a "change the
        existing decision" checkbox where a verdict would be replaced); on confirmation, apply the
        action to each session through the services and say how it went. None when done."""
        data = request.POST if "confirm" in request.POST else None
        form_class = DecisionForm if action.decision else NoteForm
        form = form_class(data) if action.needs_note else None
        if "confirm" in request.POST and (form is None or form.is_valid()):
            note = form.cleaned_data["note"] if form is not None else ""
            replace = bool(form.cleaned_data.get("replace")) if form is not None else False
            outcomes: Counter[str] = Counter()
            for session in queryset.order_by("created_at"):
                outcomes[action.apply(session, request.user, note, replace)] += 1
            self._report(request, action, outcomes)
            return None
        warnings = self._decision_warnings(queryset, action, single=single) if action.decision else []
        conflicting = any(kind == "decided" for kind, _text in warnings)
        if form is not None and conflicting and single:
            form.fields["replace"].widget.attrs["required"] = True  # the one thing this page is for
        context = {
            **self.admin_site.each_context(request),
            "title": action.title,
            "action": action,
            "form": form,
            "warnings": [text for _kind, text in warnings],
            "show_replace": conflicting,
            "sessions": list(queryset.select_related("user")[:200]),
            "count": queryset.count(),
            "single": single,
            "opts": self.opts,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "selected": [str(pk) for pk in queryset.values_list("pk", flat=True)],
        }
        return TemplateResponse(request, self.action_template, context)

    def _decision_warnings(self, queryset: QuerySet, action: SessionAction, *, single: bool) -> list[tuple[str, str]]:
        """What the confirmation of a decision must say before it is given, counted in one query:
        sessions it will skip, and sessions whose verdict it would replace (only if confirmed)."""
        decision = action.decision
        eligible = (
            Q(status=Status.DONE) if decision == Decision.APPROVED else Q(status__in=VerificationSession.FINAL_STATUSES)
        )
        counts = queryset.aggregate(
            ineligible=Count("pk", filter=~eligible),
            already=Count("pk", filter=eligible & Q(decision=decision)),
            decided=Count("pk", filter=eligible & Q(decision__in=SETTLED_DECISIONS) & ~Q(decision=decision)),
        )
        warnings: list[tuple[str, str]] = []
        if counts["decided"] and single:
            current = queryset.first()
            warnings.append(
                (
                    "decided",
                    gettext(
                        "This session already has a decision: %(current)s. Tick “Change the existing decision” "
                        "to replace it."
                    )
                    % {"current": current.get_decision_display() if current else ""},
                )
            )
        elif counts["decided"]:
            warnings.append(
                (
                    "decided",
                    ngettext(
                        "%(count)d of these sessions already has another decision: it keeps it unless you tick "
                        "“Change the existing decision”.",
                        "%(count)d of these sessions already have another decision: they keep it unless you tick "
                        "“Change the existing decision”.",
                        counts["decided"],
                    )
                    % {"count": counts["decided"]},
                )
            )
        if counts["ineligible"]:
            text = (
                ngettext(
                    "%(count)d of these sessions is not completed: it will be skipped "
                    "(only a completed session can be approved).",
                    "%(count)d of these sessions are not completed: they will be skipped "
                    "(only a completed session can be approved).",
                    counts["ineligible"],
                )
                if decision == Decision.APPROVED
                else ngettext(
                    "%(count)d of these sessions is still open: it will be skipped.",
                    "%(count)d of these sessions are still open: they will be skipped.",
                    counts["ineligible"],
                )
            )
            warnings.append(("ineligible", text % {"count": counts["ineligible"]}))
        if counts["already"]:
            warnings.append(
                (
                    "already",
                    ngettext(
                        "%(count)d of these sessions is already %(verb)s: it stays as it is.",
                        "%(count)d of these sessions are already %(verb)s: they stay as they are.",
                        counts["already"],
                    )
                    % {"count": counts["already"], "verb": action.verb},
                )
            )
        return warnings

    def _report(self, request: HttpRequest, action: SessionAction, outcomes: Counter[str]) -> None:
        if outcomes["done"]:
            self.message_user(
                request,
                ngettext("%(count)d session %(verb)s.", "%(count)d sessions %(verb)s.", outcomes["done"])
                % {"count": outcomes["done"], "verb": action.verb},
                messages.SUCCESS,
            )
        if outcomes["failed"]:
            self.message_user(
                request,
                ngettext(
                    "%(count)d failed: the provider did not answer (recorded in the timeline).",
                    "%(count)d failed: the provider did not answer (recorded in the timelines).",
                    outcomes["failed"],
                )
                % {"count": outcomes["failed"]},
                messages.ERROR,
            )
        if outcomes["skipped"]:
            self.message_user(
                request,
                ngettext(
                    "%(count)d skipped: not possible in its current status.",
                    "%(count)d skipped: not possible in their current status.",
                    outcomes["skipped"],
                )
                % {"count": outcomes["skipped"]},
                messages.WARNING,
            )
        if outcomes["not_completed"]:
            self.message_user(
                request,
                ngettext(
                    "%(count)d skipped: not completed (only a completed session can be approved).",
                    "%(count)d skipped: not completed (only a completed session can be approved).",
                    outcomes["not_completed"],
                )
                % {"count": outcomes["not_completed"]},
                messages.WARNING,
            )
        if outcomes["decided"]:
            self.message_user(
                request,
                ngettext(
                    "%(count)d skipped: already decided — confirm to change it (tick “Change the existing decision”).",
                    "%(count)d skipped: already decided — confirm to change them "
                    "(tick “Change the existing decision”).",
                    outcomes["decided"],
                )
                % {"count": outcomes["decided"]},
                messages.WARNING,
            )
        if outcomes["already"]:
            self.message_user(
                request,
                ngettext(
                    "%(count)d skipped: already %(verb)s.",
                    "%(count)d skipped: already %(verb)s.",
                    outcomes["already"],
                )
                % {"count": outcomes["already"], "verb": action.verb},
                messages.WARNING,
            )

    @admin.action(description=_("Refresh selected sessions from the provider"), permissions=["change"])
    def refresh_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._confirm_and_apply(request, queryset, ACTIONS["refresh"])

    @admin.action(description=_("Cancel selected sessions"), permissions=["change"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._confirm_and_apply(request, queryset, ACTIONS["cancel"])

    @admin.action(description=_("Approve selected sessions (with a note)"), permissions=["change"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._confirm_and_apply(request, queryset, ACTIONS["approve"])

    @admin.action(description=_("Reject selected sessions (with a note)"), permissions=["change"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._confirm_and_apply(request, queryset, ACTIONS["reject"])

    @admin.action(description=_("Export selected sessions as JSON"), permissions=["view"])
    def export_json(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        sensitive = can_view_sensitive(request.user)
        rows = [
            {
                "id": str(s.pk),
                "user": s.user.get_username() if s.user else None,
                "provider": s.provider,
                "status": s.status,
                "scopes": s.scopes,
                "decision": s.decision,
                "review_note": s.review_note,
                "created_at": s.created_at.isoformat(),
                "expires_at": s.expires_at and s.expires_at.isoformat(),
                "finished_at": s.finished_at and s.finished_at.isoformat(),
                "result": redact(s.result, sensitive=sensitive, provider=s.provider),
            }
            for s in queryset.select_related("user").order_by("-created_at")
        ]
        response = JsonResponse(rows, safe=False, json_dumps_params={"indent": 2})
        response["Content-Disposition"] = 'attachment; filename="verification-sessions.json"'
        return response


# -- events ---------------------------------------------------------------------------------------------


@admin.register(VerificationEvent)
class VerificationEventAdmin(RefusesNulParameters, admin.ModelAdmin):
    list_display = (
        "created_at",
        "kind",
        "source",
        "session_link",
        "transition",
        "valid",
        "processed",
        "applied",
        "actor",
    )
    list_filter = ("kind", "source", "valid", "processed", "applied", "provider")
    list_select_related = ("session", "actor")
    search_fields = ("=session__id", "error")
    date_hierarchy = "created_at"
    show_full_result_count = False
    ordering = ("-created_at", "-id")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the audit trail is append-only

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = [
            "session_link",
            "provider",
            "kind",
            "source",
            "old_status",
            "new_status",
            "applied",
            "valid",
            "processed",
            "error",
            "data",
            "remote_addr",
            "actor",
            "created_at",
        ]
        if can_view_sensitive(request.user):
            fields += ["pretty_headers", "pretty_body", "body_truncated"]
        else:
            fields += ["body_hidden"]
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return self.get_fields(request, obj)

    @admin.display(description=_("session"), ordering="session")
    def session_link(self, obj: VerificationEvent) -> str:
        if obj.session_id is None:
            return "—"
        url = reverse("admin:verification_link_verificationsession_change", args=[obj.session_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.session_id)[:8])

    @admin.display(description=_("status"))
    def transition(self, obj: VerificationEvent) -> str:
        return f"{obj.old_status or '·'} → {obj.new_status}" if obj.new_status else ""

    @admin.display(description=_("raw body"))
    def pretty_body(self, obj: VerificationEvent) -> str:
        return pretty_body(obj.body) if obj.body else "—"

    @admin.display(description=_("headers"))
    def pretty_headers(self, obj: VerificationEvent) -> str:
        return pretty_json(obj.headers) if obj.headers else "—"

    @admin.display(description=_("raw body"))
    def body_hidden(self, obj: VerificationEvent) -> str:
        return REDACTED if obj.body else "—"

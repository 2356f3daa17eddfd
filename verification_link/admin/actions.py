"""Staff actions on sessions — refresh, cancel, approve, reject, mark for review, assign, erase,
export — singly from the detail page
and in bulk from the list, each through the services with a note and a per-outcome report
(``SessionActions``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from .. import services
from ..exceptions import InvalidTransition, ProviderError
from ..models import VerificationSession
from ..results import REDACTED, can_view_sensitive, redact
from .display import SETTLED_DECISIONS, Decision, Status, session_label

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

    # A mixin of ``VerificationSessionAdmin``: typed as the ``ModelAdmin`` it is mixed into.
    _AdminBase = admin.ModelAdmin[VerificationSession]
else:
    _AdminBase = object


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
        title: StrOrPromise,
        verb: StrOrPromise,
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


def _assign(session: VerificationSession, user: Any, note: str, replace: bool) -> str:
    if session.assigned_to_id == user.pk:
        return "already"
    try:
        services.assign_review(session, user)
    except InvalidTransition:
        return "taken"  # another reviewer claimed it (perhaps a moment ago)
    return "done"


def _erase(session: VerificationSession, user: Any, note: str, replace: bool) -> str:
    if session.user_id is None:
        return "skipped"
    services.erase_user_data(session.user, by=user)
    return "done"


ACTIONS = {
    action.name: action
    for action in [
        SessionAction("assign", _("Assign to me"), _("assigned to you"), _assign),
        SessionAction("erase", _("Erase the user's identity data"), _("erased"), _erase, danger=True),
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
        SessionAction(
            "review",
            _("Mark for review"),
            _("marked for review"),
            _review(Decision.REVIEW),
            needs_note=True,
            decision=Decision.REVIEW,
        ),
    ]
}


class SessionActions(_AdminBase):
    """The actions, their URLs and confirmation pages, of ``VerificationSessionAdmin``."""

    action_template: str  # the confirmation page, set by the admin class

    def _url_prefix(self) -> str:
        """What the admin's URL names of this model start with (``admin:<prefix>_change``)."""
        return f"{self.opts.app_label}_{self.opts.model_name}"

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
        self,
        request: HttpRequest,
        queryset: QuerySet[VerificationSession],
        action: SessionAction,
        *,
        single: bool = False,
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
        sessions = list(queryset.select_related("user")[:200])
        context = {
            **self.admin_site.each_context(request),
            "title": action.title,
            "vl_label": session_label(sessions[0]) if single and sessions else "",
            "action": action,
            "form": form,
            "warnings": [text for _kind, text in warnings],
            "show_replace": conflicting,
            "sessions": sessions,
            "count": queryset.count(),
            "single": single,
            "opts": self.opts,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "selected": [str(pk) for pk in queryset.values_list("pk", flat=True)],
        }
        return TemplateResponse(request, self.action_template, context)

    def _decision_warnings(
        self, queryset: QuerySet[VerificationSession], action: SessionAction, *, single: bool
    ) -> list[tuple[str, str]]:
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
        if outcomes["taken"]:
            self.message_user(
                request,
                ngettext(
                    "%(count)d skipped: another reviewer has it in their queue.",
                    "%(count)d skipped: other reviewers have them in their queues.",
                    outcomes["taken"],
                )
                % {"count": outcomes["taken"]},
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
    def refresh_selected(self, request: HttpRequest, queryset: QuerySet[VerificationSession]) -> HttpResponse | None:
        return self._confirm_and_apply(request, queryset, ACTIONS["refresh"])

    @admin.action(description=_("Cancel selected sessions"), permissions=["change"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[VerificationSession]) -> HttpResponse | None:
        return self._confirm_and_apply(request, queryset, ACTIONS["cancel"])

    @admin.action(description=_("Approve selected sessions (with a note)"), permissions=["change"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[VerificationSession]) -> HttpResponse | None:
        return self._confirm_and_apply(request, queryset, ACTIONS["approve"])

    @admin.action(description=_("Reject selected sessions (with a note)"), permissions=["change"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[VerificationSession]) -> HttpResponse | None:
        return self._confirm_and_apply(request, queryset, ACTIONS["reject"])

    @admin.action(description=_("Mark selected sessions for review (with a note)"), permissions=["change"])
    def review_selected(self, request: HttpRequest, queryset: QuerySet[VerificationSession]) -> HttpResponse | None:
        return self._confirm_and_apply(request, queryset, ACTIONS["review"])

    @admin.action(description=_("Assign selected sessions to me"), permissions=["change"])
    def assign_selected(self, request: HttpRequest, queryset: QuerySet[VerificationSession]) -> HttpResponse | None:
        return self._confirm_and_apply(request, queryset, ACTIONS["assign"])

    @admin.action(
        description=_("Erase the identity data of the selected sessions' users (keeps status and decisions)"),
        permissions=["change"],
    )
    def erase_selected(self, request: HttpRequest, queryset: QuerySet[VerificationSession]) -> HttpResponse | None:
        return self._confirm_and_apply(request, queryset, ACTIONS["erase"])

    @admin.action(description=_("Export selected sessions as JSON"), permissions=["view"])
    def export_json(self, request: HttpRequest, queryset: QuerySet[VerificationSession]) -> HttpResponse:
        sensitive = can_view_sensitive(request.user)
        sessions = list(queryset.select_related("user").order_by("-created_at"))
        rows = [
            {
                "id": str(s.pk),
                "user": s.user.get_username() if s.user else None,
                "provider": s.provider,
                "status": s.status,
                "scopes": s.scopes,
                "decision": s.decision,
                "review_note": s.review_note if sensitive or not s.review_note else REDACTED,
                "created_at": s.created_at.isoformat(),
                "expires_at": s.expires_at and s.expires_at.isoformat(),
                "finished_at": s.finished_at and s.finished_at.isoformat(),
                "result": redact(s.result, sensitive=sensitive, provider=s.provider),
            }
            for s in sessions
        ]
        if sensitive:  # who was shown biometric results, recorded per session
            for session in sessions:
                services.record_sensitive_view(session, request.user, where="export")
        response = JsonResponse(rows, safe=False, json_dumps_params={"indent": 2})
        response["Content-Disposition"] = 'attachment; filename="verification-sessions.json"'
        return response

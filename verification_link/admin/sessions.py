"""The admin of verification sessions: the list and the read-only detail ("View verification
session", named by provider, short id and status), put together from the listing, display and
action mixins."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .. import services
from ..framing import forbid_framing
from ..models import VerificationSession
from ..results import can_view_sensitive
from .actions import ACTIONS, SessionActions, decision_refusal
from .display import SETTLED_DECISIONS, SessionDisplay, clipped, scopes_text, session_label, status_badge, when
from .listing import CappedCountPaginator, ProviderFilter, QueueFilter, RefusesNulParameters, SessionListing
from .overview import SessionOverview

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldOpts, _FieldsetSpec  # django-stubs' names
    from django_stubs_ext import StrOrPromise

#: Django 4.2 heads its row checkbox column with the select-all toggle; later versions have none.
_SELECT_ALL_HEADER = getattr(admin.ModelAdmin.action_checkbox, "short_description", None)


@admin.register(VerificationSession)
class VerificationSessionAdmin(
    RefusesNulParameters, SessionListing, SessionDisplay, SessionOverview, SessionActions, admin.ModelAdmin
):
    # Narrow columns (the list fits 1280 px beside the navigation and the filters): the provider
    # under the user, the next step under the status, the expiry or end under the creation time.
    list_display = (
        "short_id",
        "user_column",
        "status_and_step",
        "scopes_column",
        "decision",
        "created_column",
    )
    list_display_links = ("short_id",)
    list_filter = ("status", "decision", QueueFilter, ProviderFilter, ("created_at", admin.DateFieldListFilter))
    search_fields = ("user__username", "user__email", "=token", "=external_id", "=reference")
    search_help_text = _("Username or e-mail (contains), or an exact token, external id or reference.")
    list_select_related = ("user",)
    date_hierarchy = "created_at"  # the filtering; the drill-down itself is rendered by month_links()
    show_full_result_count = False  # no second COUNT(*) of the whole table
    paginator = CappedCountPaginator
    list_per_page = 25  # a review queue: a page that renders fast, filters to narrow it
    ordering = ("-created_at",)
    actions = [
        "refresh_selected",
        "cancel_selected",
        "approve_selected",
        "reject_selected",
        "review_selected",
        "assign_selected",
        "erase_selected",
        "export_json",
    ]
    change_form_template = "admin/verification_link/verificationsession/change_form.html"
    change_list_template = "admin/verification_link/verificationsession/change_list.html"
    action_template = "admin/verification_link/verificationsession/action_confirmation.html"

    # -- read-only, whoever asks ----------------------------------------------------------------------

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The session's page; when it showed sensitive results, who saw them is recorded
        (``record_sensitive_view``: one ``viewed`` event per staff member per session per hour)."""
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200 and can_view_sensitive(request.user):
            session = self.get_object(request, unquote(object_id))
            if session is not None:
                services.record_sensitive_view(session, request.user, where="admin")
        return response

    def history_view(self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None) -> Any:
        obj = self.get_object(request, unquote(object_id))
        if obj is not None:
            label = session_label(obj)
            extra_context = {"title": gettext("Change history: %s") % label, "vl_label": label, **(extra_context or {})}
        return super().history_view(request, object_id, extra_context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # sessions start at a provider, through start_verification()

    def get_model_perms(self, request: HttpRequest) -> dict[str, bool]:
        """The admin index links the list as "View": nothing is changed there by hand. The change
        permission keeps its meaning for the actions (``has_change_permission``)."""
        return {**super().get_model_perms(request), "change": False}

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return flatten_fieldsets(self.get_fieldsets(request, obj))

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> _FieldsetSpec:
        sensitive = can_view_sensitive(request.user)
        note = "review_note" if sensitive else "review_note_hidden"
        fieldsets: list[tuple[StrOrPromise | None, _FieldOpts]] = [
            (
                None,
                {
                    "fields": [
                        "id",
                        "user",
                        "provider",
                        "status_column",
                        "next_step",
                        "scopes_display",
                        "created_at",
                        "expires_at",
                        "finished_at",
                        "attempt_chain",
                    ]
                },
            ),
            # The note can quote the person: only for staff who may see the sensitive results.
            (
                _("Decision"),
                {"fields": ["decision", "reviewed_by", "reviewed_at", note]},
            ),
            # The provider's own words: what it calls the state, its verdict and its reason codes.
            (_("Provider's verdict"), {"fields": ["provider_status", "provider_verdict", "provider_reasons"]}),
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
        named = {}
        if obj is not None:  # read-only whoever asks: "View", as Django says without the change permission
            label = session_label(obj)
            named = {"title": gettext("View %s") % self.opts.verbose_name, "subtitle": label, "vl_label": label}
        extra_context = {
            **named,
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
        is not completed or already approved, no Reject on a rejected one, no Mark for review on
        one in review, no decision at all on an open one), and one replacing a verdict says so."""
        if not self.has_change_permission(request, obj):
            return []
        if not obj.is_final:  # no decision on an open session: refresh it, or cancel it
            available = [ACTIONS["refresh"], ACTIONS["cancel"]]
        else:  # the rules of services.review_session: approve a DONE one, reject or review any final one
            decisions = (ACTIONS["approve"], ACTIONS["reject"], ACTIONS["review"])
            available = [a for a in decisions if not decision_refusal(obj, a.decision)]
            if obj.decision == "review" and obj.assigned_to_id != request.user.pk:
                available.append(ACTIONS["assign"])
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

    # -- list ----------------------------------------------------------------------------------------------

    @admin.display(description=_SELECT_ALL_HEADER)
    def action_checkbox(self, obj: VerificationSession) -> SafeString:
        """Django's row checkbox, written out instead of rendered through the form-widget templates:
        that cost as much as the rest of the row (``benchmarks/admin.py``; same markup, same JS)."""
        label = format_html(gettext("Select this object for an action - {}"), str(obj))
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            ACTION_CHECKBOX_NAME,
            obj.pk,
            label,
        )

    @admin.display(description=_("id"), ordering="id")
    def short_id(self, obj: VerificationSession) -> str:
        return obj.short_id

    @admin.display(description=_("user"), ordering="user")
    def user_column(self, obj: VerificationSession) -> str:
        """The user (cut to the column, whole in the tooltip) and the provider alias below."""
        user = obj.user  # no query when there is none (and the list selects it with the row)
        name = clipped(user.get_username()) if user is not None else "—"
        return format_html('{}<span class="vl-sub">{}</span>', name, clipped(obj.provider))

    @admin.display(description=_("status"), ordering="status")
    def status_column(self, obj: VerificationSession) -> str:
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description=_("status"), ordering="status")
    def status_and_step(self, obj: VerificationSession) -> str:
        """The list's status: the badge, and the next step below it while the session is open."""
        badge = status_badge(obj.status, obj.get_status_display())
        if obj.next_step and not obj.is_final:
            step = gettext("next: %(step)s") % {"step": obj.get_next_step_display()}
            return format_html('{}<span class="vl-sub">{}</span>', badge, step)
        return badge

    @admin.display(description=_("checks"))
    def scopes_column(self, obj: VerificationSession) -> str:
        return scopes_text(obj.scopes) or "—"

    @admin.display(description=_("created / ends"), ordering="created_at")
    def created_column(self, obj: VerificationSession) -> str:
        """When it was created, and below it when it finished (or expires, while open)."""
        if obj.is_final:
            end = format_html("{} {}", _("finished"), when(obj.finished_at)) if obj.finished_at else ""
        else:
            end = format_html("{} {}", _("expires"), when(obj.expires_at)) if obj.expires_at else ""
        return format_html('{}<span class="vl-sub">{}</span>', when(obj.created_at), end)

"""The admin of verification events: a read-only audit trail ("View verification event"), linked
to its sessions, with the same date drill-down and the same words (validity, a review's decision)
as the session pages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.utils import flatten, unquote
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from .. import services
from ..models import VerificationEvent, VerificationSession
from ..results import REDACTED, can_view_sensitive
from .display import clipped, event_change, pretty_body, pretty_json, validity_label, when, without_note
from .listing import DateDrillDown, ProviderFilter, RefusesNulParameters, ValidityFilter

if TYPE_CHECKING:
    # What ModelAdmin's own hooks are declared to return (django-stubs' names for them).
    from django.contrib.admin.options import _FieldGroups, _ListDisplayT


@admin.register(VerificationEvent)
class VerificationEventAdmin(RefusesNulParameters, DateDrillDown, admin.ModelAdmin):
    # Narrow columns (the list fits 1280 px beside the navigation and the filters): the source under
    # the kind, dates on two lines; what changed in words, a review's note only with the permission.
    list_display = (
        "created_column",
        "kind_column",
        "session_link",
        "change_redacted",
        "valid_column",
        "processed",
        "applied",
        "actor_column",
    )
    # Providers from settings (``ProviderFilter``), not ``SELECT DISTINCT provider`` over every event.
    list_filter = ("kind", "source", ("valid", ValidityFilter), "processed", "applied", ProviderFilter)
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

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The event's page; when it showed a raw body and headers, who saw them is recorded on its
        session (``record_sensitive_view``)."""
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200 and can_view_sensitive(request.user):
            event = self.get_object(request, unquote(object_id))
            if event is not None and event.session_id is not None:
                session = VerificationSession.objects.only("pk", "provider").get(pk=event.session_id)
                services.record_sensitive_view(session, request.user, where="event")
        return response

    def get_list_display(self, request: HttpRequest) -> _ListDisplayT[VerificationEvent]:
        sensitive = can_view_sensitive(request.user)
        change = "change_full" if sensitive else "change_redacted"  # a review's note only with the permission
        return [change if name == "change_redacted" else name for name in self.list_display]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> _FieldGroups:
        sensitive = can_view_sensitive(request.user)
        body = ["pretty_headers", "pretty_body", "body_truncated"] if sensitive else ["body_hidden"]
        return [
            "session_link",
            "provider",
            "kind",
            "source",
            "change_full" if sensitive else "change_redacted",
            "old_status",
            "new_status",
            "applied",
            "valid_column",
            "processed",
            "error",
            "data" if sensitive else "data_redacted",
            "remote_addr",
            "actor",
            "created_at",
            *body,
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return flatten(self.get_fields(request, obj))

    @admin.display(description=_("session"), ordering="session")
    def session_link(self, obj: VerificationEvent) -> str:
        if obj.session_id is None:
            return "—"
        url = reverse("admin:verification_link_verificationsession_change", args=[obj.session_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.session_id)[:8])

    @admin.display(description=_("time"), ordering="created_at")
    def created_column(self, obj: VerificationEvent) -> str:
        return when(obj.created_at)

    @admin.display(description=_("kind"), ordering="kind")
    def kind_column(self, obj: VerificationEvent) -> str:
        if not obj.source:
            return obj.get_kind_display()
        return format_html('{}<span class="vl-sub">{}</span>', obj.get_kind_display(), obj.get_source_display())

    @admin.display(description=_("change"))
    def change_full(self, obj: VerificationEvent) -> str:
        return event_change(obj, sensitive=True)

    @admin.display(description=_("change"))
    def change_redacted(self, obj: VerificationEvent) -> str:
        return event_change(obj, sensitive=False)

    @admin.display(description=_("valid"), ordering="valid")
    def valid_column(self, obj: VerificationEvent) -> str:
        return validity_label(obj.valid)

    @admin.display(description=_("actor"), ordering="actor")
    def actor_column(self, obj: VerificationEvent) -> str:
        actor = obj.actor  # no query when there is none (and the list selects it with the row)
        return clipped(actor.get_username(), width="7em") if actor is not None else "—"

    @admin.display(description=_("data"))
    def data_redacted(self, obj: VerificationEvent) -> str:
        return pretty_json(without_note(obj.data, sensitive=False)) if obj.data else "—"

    @admin.display(description=_("raw body"))
    def pretty_body(self, obj: VerificationEvent) -> str:
        return pretty_body(obj.body) if obj.body else "—"

    @admin.display(description=_("headers"))
    def pretty_headers(self, obj: VerificationEvent) -> str:
        return pretty_json(obj.headers) if obj.headers else "—"

    @admin.display(description=_("raw body"))
    def body_hidden(self, obj: VerificationEvent) -> str:
        return REDACTED if obj.body else "—"

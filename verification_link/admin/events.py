"""The admin of verification events: a read-only audit trail, linked to its sessions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from .. import services
from ..models import VerificationEvent, VerificationSession
from ..results import REDACTED, can_view_sensitive
from .display import pretty_body, pretty_json
from .listing import RefusesNulParameters


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

"""Basic admin registration: read-only lists of sessions and events.

Nothing here writes ``status``; secrets (callback secret, token, hand-off link) are not shown.
"""

from __future__ import annotations

from django.contrib import admin

from .models import VerificationEvent, VerificationSession


class ReadOnlyAdminMixin:
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(VerificationSession)
class VerificationSessionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("short_id", "user", "provider", "status", "next_step", "decision", "created_at", "expires_at")
    list_filter = ("status", "decision", "provider")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = (
        "id",
        "user",
        "provider",
        "external_id",
        "reference",
        "scopes",
        "status",
        "next_step",
        "decision",
        "reviewed_by",
        "reviewed_at",
        "review_note",
        "expires_at",
        "finished_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields


@admin.register(VerificationEvent)
class VerificationEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "kind",
        "source",
        "provider",
        "session",
        "old_status",
        "new_status",
        "applied",
        "valid",
    )
    list_filter = ("kind", "source", "valid", "processed", "applied")
    list_select_related = ("session",)
    show_full_result_count = False
    fields = (
        "session",
        "provider",
        "kind",
        "source",
        "old_status",
        "new_status",
        "applied",
        "valid",
        "processed",
        "error",
        "remote_addr",
        "actor",
        "created_at",
    )
    readonly_fields = fields

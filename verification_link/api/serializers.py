"""What the API accepts and answers. Never a result's biometric parts, never raw events."""

from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from .. import conf
from ..exceptions import ConfigurationError
from ..models import VerificationSession
from ..providers import get_provider
from ..results import summary
from .schema import COMPONENT_PREFIX, EnumChoiceField

# Every schema component is named with COMPONENT_PREFIX (``ref_name``, which drf-spectacular honours),
# so none collides with a site's own ``Session`` or ``Error``.


class CheckSummarySerializer(serializers.Serializer):
    passed = serializers.BooleanField(allow_null=True, help_text="The provider's verdict; null when missing.")
    score = serializers.FloatField(allow_null=True)

    class Meta:
        ref_name = f"{COMPONENT_PREFIX}CheckSummary"


class SessionSerializer(serializers.ModelSerializer):
    """A session as its owner (or staff) sees it. ``url`` — the one-time hand-off link, a bearer
    secret — only while the session is open and only to its owner; ``decision`` and ``result`` (a
    per-check summary) only once it is final."""

    status = EnumChoiceField(
        choices=VerificationSession.Status.choices,
        read_only=True,
        component_name=f"{COMPONENT_PREFIX}StatusEnum",
    )
    next_step = EnumChoiceField(
        choices=VerificationSession.NextStep.choices,
        allow_blank=True,
        read_only=True,
        component_name=f"{COMPONENT_PREFIX}NextStepEnum",
        help_text="The step the user is at; blank when unknown or finished.",
    )
    url = serializers.SerializerMethodField(help_text="The one-time hand-off link while open (owner only).")
    qr_url = serializers.SerializerMethodField(help_text="SVG QR code of the link while open (owner only).")
    decision = serializers.SerializerMethodField()
    result = serializers.SerializerMethodField(help_text="Per requested check: passed and score, once final.")
    previous: serializers.PrimaryKeyRelatedField[VerificationSession] = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="The attempt this one replaces (a retry), or null."
    )

    class Meta:
        ref_name = COMPONENT_PREFIX
        model = VerificationSession
        fields = [
            "id",
            "provider",
            "scopes",
            "status",
            "next_step",
            "url",
            "qr_url",
            "expires_at",
            "created_at",
            "finished_at",
            "decision",
            "result",
            "metadata",
            "previous",
        ]
        read_only_fields = fields

    def _owner(self, obj: VerificationSession) -> bool:
        request = self.context.get("request")
        return bool(request and obj.user_id is not None and obj.user_id == request.user.pk)

    def get_url(self, obj: VerificationSession) -> str | None:
        return obj.url if (obj.url and not obj.is_final and self._owner(obj)) else None

    def get_qr_url(self, obj: VerificationSession) -> str | None:
        if not self.get_url(obj):
            return None
        path = reverse("verification_link:qr", args=[obj.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_decision(self, obj: VerificationSession) -> str | None:
        return obj.decision if obj.is_final else None

    def get_result(self, obj: VerificationSession) -> dict[str, dict[str, Any]] | None:
        return summary(obj) if obj.is_final else None


# Tell drf-spectacular the shapes of the method fields.
try:
    from drf_spectacular.utils import extend_schema_field

    extend_schema_field(serializers.URLField(allow_null=True))(SessionSerializer.get_url)
    extend_schema_field(serializers.URLField(allow_null=True))(SessionSerializer.get_qr_url)
    extend_schema_field(
        EnumChoiceField(
            choices=VerificationSession.Decision.choices,
            allow_null=True,
            component_name=f"{COMPONENT_PREFIX}DecisionEnum",
        )
    )(SessionSerializer.get_decision)
    extend_schema_field(serializers.DictField(child=CheckSummarySerializer(), allow_null=True))(
        SessionSerializer.get_result
    )
except ImportError:  # pragma: no cover
    pass


class SessionCreateSerializer(serializers.Serializer):
    """Start a session. Every field is optional: the provider alias and scopes default to settings.
    The choices of ``provider`` are ``USER_PROVIDERS`` (read when the form is built), those of
    ``scopes`` what these aliases support. Staff code calls the services with any alias."""

    provider = EnumChoiceField(
        choices=[],
        required=False,
        component_name=f"{COMPONENT_PREFIX}ProviderEnum",
        help_text="A provider alias the site lets users pick (USER_PROVIDERS).",
    )
    scopes = serializers.ListField(
        child=EnumChoiceField(choices=[], component_name=f"{COMPONENT_PREFIX}ScopeEnum"),
        required=False,
        max_length=8,
        help_text="Checks to run (those the provider supports); default: the alias's SCOPES.",
    )
    metadata = serializers.DictField(
        required=False, help_text="Any JSON object (at most 4 KiB), kept with the session."
    )
    next_url = serializers.RegexField(
        r"^/(?![/\\])[^\s]*$",
        required=False,
        max_length=2048,
        help_text="Where to send the user after the flow: a path of this site, e.g. /account/.",
    )

    class Meta:
        ref_name = f"{COMPONENT_PREFIX}Create"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read (and validated) once per form: validate() picks among the very same aliases.
        self.user_providers = aliases = conf.user_providers()
        cast(EnumChoiceField, self.fields["provider"]).choices = aliases
        scopes: list[str] = []
        for alias in aliases:
            try:
                scopes += [scope for scope in get_provider(alias).supported_scopes if scope not in scopes]
            except ConfigurationError:
                continue
        cast(EnumChoiceField, cast(serializers.ListField, self.fields["scopes"]).child).choices = scopes

    def validate_metadata(self, value: dict) -> dict:
        import json

        if len(json.dumps(value, default=str)) > 4096:
            raise serializers.ValidationError("At most 4 KiB of metadata.")
        return value

    def validate_next_url(self, value: str) -> str:
        request = self.context.get("request")
        hosts = {request.get_host()} if request else set(settings.ALLOWED_HOSTS)
        if not url_has_allowed_host_and_scheme(
            value, allowed_hosts=hosts, require_https=bool(request and request.is_secure())
        ):
            raise serializers.ValidationError("Must be a path of this site.")
        return value

    def validate(self, attrs: dict) -> dict:
        alias = attrs.get("provider") or self._user_default()
        if alias not in self.user_providers:  # nothing to pick from: USER_PROVIDERS is empty or broken
            raise serializers.ValidationError({"provider": [_("No verification provider is available.")]})
        # Always explicit from here on: the view must not fall back to a default users may not pick.
        attrs["provider"] = alias
        try:
            backend = get_provider(alias)
        except ConfigurationError:
            raise serializers.ValidationError({"provider": ["This provider is not available."]}) from None
        if "scopes" in attrs:
            from ..exceptions import InvalidRequest

            try:
                attrs["scopes"] = backend.validate_scopes(attrs["scopes"])
            except InvalidRequest as exc:
                raise serializers.ValidationError({"scopes": [str(exc)]}) from None
        return attrs

    def _user_default(self) -> str | None:
        """``DEFAULT_PROVIDER`` when users may pick it, else the first alias they may pick."""
        try:
            default = conf.default_provider()
        except ConfigurationError:
            default = None
        if default in self.user_providers:
            return default
        return self.user_providers[0] if self.user_providers else None


class ErrorSerializer(serializers.Serializer):
    """Every error the API answers (validation errors list the fields instead)."""

    code = serializers.CharField(
        help_text="What went wrong, for programs: provider_unavailable, unavailable, provider_rejected, "
        "provider_auth, invalid_transition, too_many_attempts, or DRF's own (not_authenticated, "
        "permission_denied, not_found, throttled, parse_error, ...)."
    )
    detail = serializers.CharField(help_text="What went wrong, for people.")

    class Meta:
        ref_name = f"{COMPONENT_PREFIX}Error"

"""The provider base class: the HTTP wire, error mapping, and the small value types services use.

A provider turns the app's request into its wire format and back and raises typed errors; it never
touches the database. Adding a provider means one module with one subclass; nothing else changes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from json import dumps
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.core.checks import CheckMessage
from django.core.checks import Error as CheckError
from django.core.checks import Warning as CheckWarning
from django.utils.dateparse import parse_datetime
from requests.adapters import HTTPAdapter

from .. import conf, metrics
from ..exceptions import (
    ConfigurationError,
    InvalidRequest,
    ProviderAuthError,
    ProviderRejected,
    ProviderUnavailable,
)
from ..jsonbody import parse_json
from ..jsonbody import storable as storable  # re-exported: where it lived before jsonbody.py
from ..webhooks import WebhookVerifier
from .keys import COMMON_KEYS
from .types import CheckRow, CreatedSession, CreateRequest, StatusReport, Verdict, WebhookReport

if TYPE_CHECKING:
    from ..models import VerificationSession

logger = logging.getLogger("verification_link.providers")

__all__ = [
    "BaseProvider",
    "CheckRow",
    "CreateRequest",
    "CreatedSession",
    "StatusReport",
    "Verdict",
    "WebhookReport",
    "storable",
]


#: Django's Chinese codes by script or region, as providers spell them (by region).
CHINESE_REGIONS = {"zh-hant": "zh-tw", "zh-hk": "zh-tw", "zh-mo": "zh-tw", "zh-hans": "zh-cn", "zh-sg": "zh-cn"}


class BaseProvider:
    """One configured provider account (an alias of ``VERIFICATION_LINK["PROVIDERS"]``).

    Instances are shared across threads (see ``verification_link.providers.get_provider``): they hold
    one pooled ``requests.Session`` and no per-call state.
    """

    #: Human name for messages and the admin.
    display_name: ClassVar[str] = "provider"
    #: Whether ``get_status`` exists; sessions of providers that cannot be polled expire locally.
    pollable: ClassVar[bool] = False
    #: Scopes the provider understands, and the default when neither the call nor settings name any.
    supported_scopes: ClassVar[tuple[str, ...]] = ()
    default_scopes: ClassVar[tuple[str, ...]] = ()
    #: Settings keys that must be non-empty; those of them that are secrets.
    required_settings: ClassVar[tuple[str, ...]] = ()
    secret_settings: ClassVar[tuple[str, ...]] = ()
    #: The keys an alias may set (``settings_table.Setting`` each: default, validator, check id,
    #: doc); a subclass declares only its own, merged over these: any other key is an error (E016).
    config_keys: ClassVar[Mapping[str, Any]] = COMMON_KEYS
    default_base_url: ClassVar[str] = ""
    #: Longest lifetime the provider accepts, and the default when ``TTL`` is unset (``None``:
    #: ``max_ttl``), in seconds.
    max_ttl: ClassVar[int] = 86400
    default_ttl: ClassVar[int | None] = None
    #: Provider status value → ``VerificationSession.Status`` value.
    status_map: ClassVar[Mapping[str, str]] = {}
    #: Provider next-step value → ``VerificationSession.NextStep`` value.
    next_step_map: ClassVar[Mapping[str, str]] = {}
    #: Whether the provider takes our own per-attempt reference (Valify ``reference_id``).
    uses_reference: ClassVar[bool] = False
    #: Whether the provider posts account-level webhooks (to ``webhook/<alias>/``), and the
    #: defaults of its webhook authentication (see ``verification_link.webhooks``).
    receives_webhooks: ClassVar[bool] = False
    webhook_defaults: ClassVar[Mapping[str, Any]] = {}
    #: The class that authenticates this provider's webhooks: ``WebhookVerifier`` with the
    #: alias's ``WEBHOOK_*`` settings, or a subclass where the provider's scheme is its own.
    webhook_verifier_class: ClassVar[type[WebhookVerifier]] = WebhookVerifier
    #: Prefixes the provider's webhook secrets carry (Stripe ``whsec_``): a secret without one
    #: is most likely another value pasted in its place (W007).
    webhook_secret_prefixes: ClassVar[tuple[str, ...]] = ()
    #: Whether ``cancel_session`` cancels at the provider (else a cancel is local only), and
    #: whether ``redact_session`` deletes the provider's copy of the identity data.
    supports_cancel: ClassVar[bool] = False
    supports_redaction: ClassVar[bool] = False
    #: What the user needs for the flow, shown on the start page (``labels.NEEDS``: ``camera``,
    #: ``id_document``, ``national_id``, ``phone``).
    user_needs: ClassVar[tuple[str, ...]] = ("camera",)
    #: Setting → (live prefix, test prefix) of keys whose prefix tells the mode (``sk_live_`` /
    #: ``sk_test_``): a live key with ``DEBUG`` on, or a test key with it off, is warned about.
    key_prefixes: ClassVar[Mapping[str, tuple[str, str]]] = {}
    #: Connection pool size of the shared ``requests.Session`` (threads polling at once).
    pool_size: ClassVar[int] = 32
    #: The languages the hosted page is documented to speak, as the provider spells them. The
    #: user's language goes to the provider only when it is one of these (``hosted_language``):
    #: an unknown code could make the create fail. Empty: nothing sent unless the site names one.
    hosted_languages: ClassVar[tuple[str, ...]] = ()

    def __init__(self, alias: str, config: Mapping[str, Any]) -> None:
        self.alias = alias
        self._config = dict(config)
        self.base_url = str(self._config.get("BASE_URL") or self.default_base_url).rstrip("/")
        self.http = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self.pool_size, max_retries=0)
        self.http.mount("https://", adapter)
        self.http.mount("http://", adapter)
        self.http.headers["User-Agent"] = "django-verification-link"
        # requests re-reads proxy variables from the environment on every call (a scan of os.environ);
        # read them once here instead, so HTTPS_PROXY and friends still apply.
        self.http.proxies = requests.utils.get_environ_proxies(self.base_url or "https://localhost")
        self.http.trust_env = False

    def __repr__(self) -> str:
        # The config holds API keys: never print it.
        return f"<{type(self).__name__} alias={self.alias!r} base_url={self.base_url!r}>"

    @classmethod
    def hosted_language(cls, code: str | None) -> str:
        """The provider's spelling of the language ``code`` (Django's ``ar``, ``pt-br``, ``fr-ca``),
        matched whole or by its first part (``ar-eg`` → ``ar``, ``fr`` → ``fr_FR``); "" when the
        hosted page does not speak it (``hosted_languages``)."""
        if not isinstance(code, str) or not code or len(code) > 35:
            return ""
        wanted = code.strip().lower().replace("_", "-")
        spoken = {language.lower().replace("_", "-"): language for language in cls.hosted_languages}
        for candidate in (wanted, CHINESE_REGIONS.get(wanted)):
            if candidate in spoken:
                return spoken[candidate]
        primary = wanted.split("-", 1)[0]
        return next((language for key, language in spoken.items() if key.split("-", 1)[0] == primary), "")

    def setting(self, name: str, default: Any = None) -> Any:
        return self._config.get(name, default)

    def close(self) -> None:
        self.http.close()

    # -- configuration ------------------------------------------------------------------------

    @property
    def ttl(self) -> int:
        """``TTL``, validated here as well as by ``manage.py check``: servers run no checks, and a
        ``"1h"`` must not become a 500 at the first start."""
        value = self.setting("TTL")
        if value is None:
            return self.default_ttl or self.max_ttl
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= self.max_ttl:
            key = conf.key_path("PROVIDERS", self.alias, "TTL")
            raise ConfigurationError(f"{key} must be whole seconds between 1 and {self.max_ttl}.")
        return value

    @property
    def timeout(self) -> tuple[float, float]:
        """(connect, read) seconds: the alias's own values, else the global ones."""
        connect = self.setting("CONNECT_TIMEOUT") or conf.get("CONNECT_TIMEOUT")
        read = self.setting("READ_TIMEOUT") or conf.get("READ_TIMEOUT")
        return (float(connect), float(read))

    @property
    def configured_scopes(self) -> list[str]:
        scopes = self.setting("SCOPES")
        return list(scopes) if scopes else list(self.default_scopes)

    def validate_scopes(self, scopes: Iterable[str] | None) -> list[str]:
        """Normalise (lower case, no duplicates, order kept) and refuse what the provider does not know."""
        if scopes is None:
            scopes = self.configured_scopes
        if isinstance(scopes, str):
            raise InvalidRequest("scopes must be a list of scope names, not a string")
        cleaned: list[str] = []
        for scope in scopes:
            if not isinstance(scope, str):
                raise InvalidRequest("every scope must be a string")
            name = scope.strip().lower()
            if name not in self.supported_scopes:
                allowed = ", ".join(self.supported_scopes)
                raise InvalidRequest(f"unknown scope {scope!r} for {self.display_name} (allowed: {allowed})")
            if name not in cleaned:
                cleaned.append(name)
        if self.supported_scopes and not cleaned:
            raise InvalidRequest("at least one scope is required")
        return cleaned

    def validate_ttl(self, ttl: int | None) -> int:
        value = self.ttl if ttl is None else ttl
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= self.max_ttl:
            raise InvalidRequest(f"ttl must be a whole number of seconds between 1 and {self.max_ttl}")
        return value

    @classmethod
    def check_config(cls, alias: str, config: Mapping[str, Any]) -> list[CheckMessage]:
        """System-check messages for one alias; each names the exact key to fix."""
        messages: list[CheckMessage] = []
        for key in cls.required_settings:
            if not config.get(key):
                messages.append(
                    CheckError(
                        f"{conf.key_path('PROVIDERS', alias, key)} is missing or empty.",
                        hint=f"{cls.display_name} needs it for every call.",
                        id="verification_link.E004",
                    )
                )
        scopes = config.get("SCOPES")
        if scopes is not None:
            if isinstance(scopes, str) or not isinstance(scopes, Iterable):
                unknown = [scopes]
            else:
                unknown = [s for s in scopes if not isinstance(s, str) or s.lower() not in cls.supported_scopes]
            if unknown:
                messages.append(
                    CheckError(
                        f"{conf.key_path('PROVIDERS', alias, 'SCOPES')} has scopes {cls.display_name} "
                        f"does not know: {unknown!r}.",
                        hint="Allowed: " + ", ".join(cls.supported_scopes),
                        id="verification_link.E005",
                    )
                )
        ttl = config.get("TTL")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= cls.max_ttl):
            messages.append(
                CheckError(
                    f"{conf.key_path('PROVIDERS', alias, 'TTL')} must be seconds between 1 and {cls.max_ttl}.",
                    id="verification_link.E006",
                )
            )
        base_url = config.get("BASE_URL") or cls.default_base_url
        if base_url and not str(base_url).startswith("https://") and not settings.DEBUG:
            messages.append(
                CheckWarning(
                    f"{conf.key_path('PROVIDERS', alias, 'BASE_URL')} is not HTTPS: credentials travel in clear.",
                    hint="Fine for the local sandbox; use https:// for a real provider.",
                    id="verification_link.W002",
                )
            )
        messages.extend(cls.key_mode_warnings(alias, config))
        if cls.receives_webhooks:
            webhook_config = cls.webhook_config(config)
            messages.extend(cls.webhook_verifier_class.check_config(alias, webhook_config, cls.webhook_defaults))
            messages.extend(cls.webhook_secret_warnings(alias, webhook_config))
        return messages

    @classmethod
    def webhook_config(cls, config: Mapping[str, Any]) -> Mapping[str, Any]:
        """The alias's settings as its webhook verifier reads them (Veriff: its shared secret is
        the webhook secret when ``WEBHOOK_SECRETS`` is unset)."""
        return config

    @classmethod
    def webhook_secret_warnings(cls, alias: str, config: Mapping[str, Any]) -> list[CheckMessage]:
        """W007: a webhook secret without the provider's prefix (never the secret in the message)."""
        secrets = config.get("WEBHOOK_SECRETS")
        if not cls.webhook_secret_prefixes or not isinstance(secrets, (list, tuple)):
            return []
        wrong = [
            n
            for n, secret in enumerate(secrets)
            if isinstance(secret, str) and not secret.startswith(cls.webhook_secret_prefixes)
        ]
        if not wrong:
            return []
        key = conf.key_path("PROVIDERS", alias, "WEBHOOK_SECRETS")
        expected = " or ".join(repr(prefix) for prefix in cls.webhook_secret_prefixes)
        return [
            CheckWarning(
                f"{key} item(s) {wrong} do not look like {cls.display_name} webhook secrets "
                f"(they start with {expected}).",
                hint="Copy the signing secret of the webhook endpoint from the provider's dashboard, not an API key.",
                id="verification_link.W007",
            )
        ]

    @classmethod
    def key_mode_warnings(cls, alias: str, config: Mapping[str, Any]) -> list[CheckMessage]:
        """W005: a live key while ``DEBUG`` is on (a developer's machine moving real people's
        data); W006: a test key with ``DEBUG`` off (production verifying nobody). By
        ``key_prefixes``; never the key itself in the message."""
        messages: list[CheckMessage] = []
        for name, (live, test) in cls.key_prefixes.items():
            value = config.get(name)
            if not isinstance(value, str) or not value:
                continue
            key = conf.key_path("PROVIDERS", alias, name)
            if settings.DEBUG and live and value.startswith(live):
                messages.append(
                    CheckWarning(
                        f"{key} is a live {cls.display_name} key while DEBUG is on.",
                        hint=f"Use a test key (it starts with {test!r}) for development.",
                        id="verification_link.W005",
                    )
                )
            elif not settings.DEBUG and test and value.startswith(test):
                messages.append(
                    CheckWarning(
                        f"{key} is a test {cls.display_name} key while DEBUG is off: nobody is really verified.",
                        hint=f"Use a live key (it starts with {live!r}) in production.",
                        id="verification_link.W006",
                    )
                )
        return messages

    # -- the operations a provider implements ---------------------------------------------------

    def create_session(self, request: CreateRequest) -> CreatedSession:
        raise NotImplementedError

    def get_status(self, session: VerificationSession, *, timeout: float | None = None) -> StatusReport:
        """Ask the provider for the session's state. Only for ``pollable`` providers."""
        raise NotImplementedError(f"{self.display_name} has no status endpoint")

    def cancel_session(self, session: VerificationSession) -> None:
        """Cancel at the provider where it can (``supports_cancel``); the default is a local cancel
        only."""

    def redact_session(self, session: VerificationSession) -> None:
        """Delete the provider's copy of the session's identity data (Stripe redact, Persona
        redact, Onfido applicant delete, …) where the provider has an API for it
        (``supports_redaction``); raises ``NotImplementedError`` where it has none."""
        raise NotImplementedError(f"{self.display_name} has no redaction API")

    def check_rows(self, scopes: Iterable[str], result: Mapping[str, Any]) -> list[CheckRow]:
        """The readable check rows of a result (document, liveness, face match, …): by default one
        per requested scope, passed as ``scope_outcomes`` says, with the part's score."""
        rows = []
        for scope, passed in self.scope_outcomes(scopes, result).items():
            part = result.get(scope)
            if not isinstance(part, Mapping):
                part = {}
            score = part.get("score", part.get("similarity"))
            detail = f"template {part['templateId']}" if part.get("templateId") else ""
            rows.append(CheckRow(scope, passed, score if isinstance(score, (int, float)) else None, detail))
        return rows

    def scope_outcomes(self, scopes: Iterable[str], result: Mapping[str, Any]) -> dict[str, bool | None]:
        """Per requested scope: passed (True), failed (False), or unknown (None, e.g. missing)."""
        return dict.fromkeys(scopes)

    def sensitive_parts_removed(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """``result`` without its biometric / special-category parts: ``SENSITIVE_RESULT_KEYS`` at the
        top level, plus whatever else the provider knows to be sensitive. Used to hide them from staff
        without the permission and to scrub them at retention."""
        hidden = set(conf.guarded("SENSITIVE_RESULT_KEYS"))
        return {key: value for key, value in result.items() if key not in hidden}

    def storable_body(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """What of an *authenticated* webhook body (already parsed) may be kept in the audit trail.

        The services store the JSON re-serialisation of the answer instead of the raw body whenever
        it differs from ``payload`` (and mark the event ``data["body_redacted"]``), so the body
        follows the same rule as the stored result: a provider that strips identity data from
        results strips it here too, at any depth, without recursion (the JSON comes from outside).
        The default leaves out what the site never stores at all (``DISCARD_RESULT_KEYS``) from the
        body's result (``result_field``) and keeps the rest. Never modify ``payload``; return a new
        dict. Applied to every recorded inbound body, authenticated or not (a callback carries the
        provider's whole answer), before anything is stored."""
        kept = dict(payload)
        discard = set(conf.guarded("DISCARD_RESULT_KEYS"))
        result = kept.get(self.result_field)
        if discard and isinstance(result, Mapping) and discard & set(result):
            kept[self.result_field] = {key: value for key, value in result.items() if key not in discard}
        return kept

    @property
    def result_field(self) -> str:
        """The key of the result in the provider's status answers and webhook bodies."""
        return "result"

    def webhook_verifier(self) -> WebhookVerifier:
        """This alias's webhook authentication (its own secrets: several accounts stay apart)."""
        return self.webhook_verifier_class(self.alias, self.webhook_config(self._config), self.webhook_defaults)

    def parse_webhook(self, payload: Mapping[str, Any]) -> WebhookReport:
        """Read an *authenticated* webhook body: which session, and what it reports."""
        raise NotImplementedError(f"{self.display_name} sends no webhooks")

    # -- the wire --------------------------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        return {}

    def request_headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        """The headers of one request: ``auth_headers`` by default. A provider that signs each
        request (Sumsub, Veriff) overrides it: ``path`` is the path with its query string as sent,
        ``body`` the exact bytes sent."""
        return self.auth_headers()

    def error_code(self, body: Any) -> str | int | None:
        """The provider's own error code in an error body, if it sends one."""
        return None

    @metrics.provider_call  # latency by alias and operation, failures by kind
    def call(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        json: Any = None,
        form: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float | tuple[float, float] | None = None,
    ) -> Any:
        """Send one request and return its decoded JSON, or raise the typed error.

        The body is ``json`` (JSON) or ``form`` (``application/x-www-form-urlencoded``: Stripe),
        encoded here so that ``request_headers`` signs exactly the bytes sent. ``operation`` names
        the call in errors and logs instead of the URL, because some URLs carry a bearer token.
        Exceptions are raised ``from None``: the chained ``requests`` error would print the URL
        (and so the token) in every traceback.
        """
        if params:
            path = f"{path}?{urlencode(params)}"
        url = self.base_url + path
        connect, read = self.timeout
        if timeout is not None:
            connect, read = timeout if isinstance(timeout, tuple) else (min(connect, timeout), timeout)
        headers: dict[str, str] = {}
        body = b""
        if json is not None:
            body = dumps(json, ensure_ascii=False, allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        elif form is not None:
            body = urlencode(list(form.items()) if isinstance(form, Mapping) else list(form)).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        headers.update(self.request_headers(method, path, body))
        try:
            response = self.http.request(
                method,
                url,
                data=body or None,
                headers=headers,
                timeout=(connect, read),
                allow_redirects=False,
            )
        except requests.Timeout:
            logger.warning("%s %s: timed out", self.alias, operation)
            raise ProviderUnavailable(f"{operation}: timed out", provider=self.alias) from None
        except requests.RequestException as exc:
            logger.warning("%s %s: %s", self.alias, operation, type(exc).__name__)
            raise ProviderUnavailable(
                f"{operation}: connection failed ({type(exc).__name__})", provider=self.alias
            ) from None
        return self.decode(response, operation)

    def decode(self, response: requests.Response, operation: str) -> Any:
        status = response.status_code
        try:
            body = parse_json(response.content) if response.content else None
        except ValueError:
            body = None
        if status in (401, 403):
            raise ProviderAuthError(
                f"{operation}: credentials refused",
                provider=self.alias,
                status_code=status,
                code=self.error_code(body),
            )
        if 400 <= status < 500:
            # 408/429 are refusals "for now": retrying later may help.
            raise ProviderRejected(
                f"{operation}: request refused",
                provider=self.alias,
                status_code=status,
                code=self.error_code(body),
                retryable=status in (408, 429),
            )
        if not 200 <= status < 300:
            raise ProviderUnavailable(
                f"{operation}: provider error",
                provider=self.alias,
                status_code=status,
                code=self.error_code(body),
            )
        if body is None:
            raise ProviderUnavailable(f"{operation}: answer is not JSON", provider=self.alias, status_code=status)
        return body

    def malformed(self, operation: str, what: str) -> ProviderUnavailable:
        metrics.record_provider_error(self.alias, operation, "malformed")  # always raised by its caller
        return ProviderUnavailable(f"{operation}: malformed answer ({what})", provider=self.alias)

    def parse_timestamp(self, value: Any, operation: str, what: str) -> datetime | None:
        if value in (None, ""):
            return None
        try:  # parse_datetime raises ValueError for well-formed but impossible times ("02-30")
            parsed = parse_datetime(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise self.malformed(operation, f"{what} is not an ISO-8601 time with a zone")
        return parsed

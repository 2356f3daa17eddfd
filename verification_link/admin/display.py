"""How sessions and events read for staff: labels instead of codes (providers, statuses, decisions,
scopes and check names, an event's validity and what it changed), status badges, dates, pretty JSON,
and the detail page's result rows, quality checks, raw result, hand-off link and event timeline
(``SessionDisplay``), each redacted for staff without ``verification_link.view_sensitive_result``."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format, time_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .. import conf
from ..exceptions import ConfigurationError
from ..jsonbody import parse_json
from ..models import VerificationEvent, VerificationSession
from ..providers import load_backend
from ..qr import qr_svg
from ..results import REDACTED, check_rows, quality_checks, redact
from ..services import attempt_chain

Status = VerificationSession.Status
Decision = VerificationSession.Decision
Kind = VerificationEvent.Kind
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


# -- labels instead of codes -----------------------------------------------------------------------------

#: Scopes and check names (``CheckRow.scope``) in words; a name not listed here is title-cased.
SCOPE_LABELS = {
    "liveness": _("Liveness"),
    "deepfake": _("Deepfake check"),
    "face_match": _("Face match"),
    "search": _("Face search"),
    "enroll": _("Face enrollment"),
    "document": _("Document"),
    "id_number": _("ID number"),
    "proof_of_address": _("Proof of address"),
    "aml": _("AML screening"),
    "nfc": _("NFC chip"),
    "phone": _("Phone number"),
    "email": _("E-mail address"),
    "ip_analysis": _("IP analysis"),
    "workflow": _("Workflow"),
    "decision": _("Provider's decision"),
    "risk_labels": _("Risk labels"),
}

#: The one vocabulary of ``VerificationEvent.valid`` (a callback's or webhook's authenticity), in
#: the event list, its filter, the event page and the session's timeline.
VALIDITY = {True: _("valid"), False: _("refused"), None: _("not judged")}


def scope_label(name: Any) -> str:
    """``"face_match"`` → "Face match"; an unknown name title-cased (``"proof_of_age"`` → "Proof Of Age")."""
    name = str(name)
    label = SCOPE_LABELS.get(name)
    return str(label) if label is not None else name.replace("_", " ").replace("-", " ").title()


def scope_html(name: Any) -> str:
    """The label, with the name staff find in the provider's documentation as its tooltip."""
    return format_html('<span title="{}">{}</span>', name, scope_label(name))


def scopes_text(scopes: Any) -> str:
    """A session's scopes in words, comma-separated ("Liveness, Deepfake check")."""
    if not isinstance(scopes, (list, tuple)) or not scopes:
        return ""
    return ", ".join(scope_label(scope) for scope in scopes)


def validity_label(valid: bool | None) -> str:
    return str(VALIDITY.get(valid, VALIDITY[None]))


def status_text(code: str) -> str:
    """A status code's label ("IN_PROGRESS" → "In progress"); an unknown code as it is."""
    return str(dict(Status.choices).get(code, code))


def decision_text(code: Any) -> str:
    return str(dict(Decision.choices).get(code, code))


def provider_label(alias: str) -> str:
    """The provider's name ("OOTO-AI"), with the alias when several configured aliases share it
    (two accounts); the alias itself when it is no longer configured."""
    try:
        name = load_backend(alias).display_name
    except ConfigurationError:
        return alias
    shared = 0
    for other in conf.providers():
        try:
            shared += load_backend(other).display_name == name
        except ConfigurationError:
            continue
    return f"{name} ({alias})" if shared > 1 else name


def session_label(session: VerificationSession) -> str:
    """How a session is named in breadcrumbs and titles: "OOTO-AI 1a2b3c4d (Done)"."""
    return gettext("%(provider)s %(id)s (%(status)s)") % {
        "provider": provider_label(session.provider),
        "id": session.short_id,
        "status": session.get_status_display(),
    }


def when(value: Any) -> str:
    """A date and time for a narrow list column (localized; the time may wrap below the date)."""
    if value is None:
        return "—"
    local = timezone.localtime(value)
    return format_html(
        '<time datetime="{}"><span class="vl-nowrap">{}</span> <span class="vl-nowrap">{}</span></time>',
        local.isoformat(),
        date_format(local, "SHORT_DATE_FORMAT"),
        time_format(local, "TIME_FORMAT"),
    )


def clipped(text: Any, *, width: str = "8em") -> str:
    """Text cut to ``width`` with an ellipsis, whole in its tooltip (user names, aliases)."""
    return format_html('<span class="vl-clip" style="max-width:{}" title="{}">{}</span>', width, text, text)


def event_change(event: VerificationEvent, *, sensitive: bool) -> str:
    """What an event changed, in words: a status transition ("In progress → Done"), or a review's
    decision ("Rejected (was: Needs review)") with its note only for ``sensitive`` viewers — a
    note can quote the person."""
    if event.kind == Kind.REVIEWED:
        data = event.data if isinstance(event.data, dict) else {}
        decision = decision_text(data.get("decision", ""))
        text = (
            gettext("%(decision)s (was: %(previous)s)")
            % {"decision": decision, "previous": decision_text(data["previous"])}
            if data.get("previous")
            else decision
        )
        note = data.get("note")
        if not note:
            return format_html("{}", text)
        if sensitive:
            return format_html('{}<q class="vl-note">{}</q>', text, note)
        return format_html('{}<span class="vl-sub">{}</span>', text, _("(note hidden)"))
    if event.new_status:
        old = status_text(event.old_status) if event.old_status else "·"
        return format_html("{} → {}", old, status_text(event.new_status))
    return ""


def without_note(data: Any, *, sensitive: bool) -> Any:
    """An event's ``data`` as staff may see it: a review's note only with the permission."""
    if sensitive or not isinstance(data, dict) or not data.get("note"):
        return data
    return {**data, "note": REDACTED}


def status_badge(status: str, label: str) -> str:
    colour = STATUS_COLOURS.get(status, "#6b7280")
    return format_html(  # a long label may wrap in a narrow column, inside its badge
        '<span style="display:inline-block;padding:1px 8px;border-radius:9px;background:{};color:#fff;'
        'font-size:11px;font-weight:600;text-align:center">{}</span>',
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


class SessionDisplay:
    """The read-only detail fields of ``VerificationSessionAdmin``."""

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
                    scope_html(row.scope),
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

    @admin.display(description=_("scopes"))
    def scopes_display(self, obj: VerificationSession) -> str:
        if not isinstance(obj.scopes, (list, tuple)) or not obj.scopes:
            return "—"
        return format_html_join(", ", "{}", ((scope_html(scope),) for scope in obj.scopes))

    @admin.display(description=_("review note"))
    def review_note_hidden(self, obj: VerificationSession) -> str:
        """The note for staff without the permission: it can quote the person."""
        return REDACTED if obj.review_note else "—"

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

    @admin.display(description=_("attempts"))
    def attempt_chain(self, obj: VerificationSession) -> str:
        """The attempts linked by "Try again", oldest first, each a link to its page; this one in bold."""
        chain = attempt_chain(obj)
        if not chain:
            return "—"
        items = []
        for attempt in chain:
            label = format_html(
                "{} · {} · {}",
                attempt.short_id,
                timezone.localtime(attempt.created_at).strftime("%Y-%m-%d %H:%M"),
                attempt.get_status_display(),
            )
            if attempt.pk == obj.pk:
                items.append(format_html('<li><strong aria-current="page">{}</strong></li>', label))
            else:
                url = reverse("admin:verification_link_verificationsession_change", args=[attempt.pk])
                items.append(format_html('<li><a href="{}">{}</a></li>', url, label))
        return format_html("<ol>{}</ol>", format_html_join("", "{}", ((item,) for item in items)))

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
            body = ""
            if event.body:
                body = (
                    format_html("<details><summary>{}</summary>{}</details>", _("raw body"), pretty_body(event.body))
                    if sensitive
                    else REDACTED
                )
            valid = validity_label(event.valid) + (" · " + gettext("applied") if event.applied else "")
            rows.append(
                format_html(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    timezone.localtime(event.created_at).strftime("%Y-%m-%d %H:%M:%S"),
                    event.get_kind_display(),
                    event.get_source_display(),
                    event_change(event, sensitive=sensitive),
                    valid,
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
                for h in (_("time"), _("kind"), _("source"), _("change"), _("valid"), _("by"), _("error"), _("body"))
            ),
        )
        body = format_html_join("", "{}", ((row,) for row in rows))
        return format_html(
            '<table class="vl-timeline"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', header, body
        )

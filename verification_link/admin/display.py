"""How a session reads for staff: status badges, pretty JSON, and the detail page's result rows,
quality checks, raw result, hand-off link and event timeline (``SessionDisplay``), each redacted
for staff without ``verification_link.view_sensitive_result``."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

from ..jsonbody import parse_json
from ..models import VerificationSession
from ..qr import qr_svg
from ..results import REDACTED, check_rows, quality_checks, redact
from ..services import attempt_chain

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

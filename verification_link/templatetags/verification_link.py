"""``{% load verification_link %}``: ``{% verification_qr session %}`` (the hand-off QR inline),
``{{ session|vl_status_label }}`` and ``{{ session|vl_state }}`` (what a user reads about a
session: ``verification_link.labels``)."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe

from ..labels import UserState, status_label, user_state
from ..models import VerificationSession
from ..qr import qr_svg

register = template.Library()


@register.simple_tag
def verification_qr(session: VerificationSession) -> SafeString | str:
    """The SVG QR code of an open session's link; nothing once it is final.

    Only render it on pages shown to the session's owner: the link is a bearer secret.
    """
    if session.is_final or not session.url:
        return ""
    # qrcode writes only path data and numbers: no text of the URL reaches the markup.
    return mark_safe(qr_svg(session.url))  # noqa: S308


@register.filter
def vl_status_label(session: VerificationSession) -> str:
    """The label a user reads for the session ("Verified", "Being reviewed"…), as on our pages."""
    return status_label(session)


@register.filter
def vl_state(session: VerificationSession) -> UserState:
    """The user's state of the session: ``.key``, ``.label``, ``.sentence``, ``.tone``."""
    return user_state(session)


@register.filter
def vl_item(mapping: dict, key: str) -> object:
    """``mapping[key]``, or None: a dict looked up by a variable in a template."""
    return mapping.get(key) if isinstance(mapping, dict) else None

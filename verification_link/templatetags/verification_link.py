"""``{% load verification_link %}`` then ``{% verification_qr session %}``: the hand-off QR inline."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe

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

"""A built-in emulator of the hosted verification providers, as an optional Django app.

Add ``"verification_link.sandbox"`` to ``INSTALLED_APPS`` and mount it with
``path("sandbox/", include("verification_link.sandbox.urls"))``. A site with no provider
credentials can then point the real provider client at ``<origin>/sandbox/ooto`` (OOTO-AI) or
``<origin>/sandbox/valify`` (Valify) and walk the whole hosted flow against itself. The sandbox
speaks the provider's wire format; nothing in the core package knows it exists.

Its credentials are derived from the site's ``SECRET_KEY`` (:mod:`verification_link.sandbox.credentials`
gives a settings module the same values), and it answers 404 to everything while ``DEBUG`` is off
unless ``VERIFICATION_LINK_SANDBOX["ALLOW_WITHOUT_DEBUG"]`` is ``True``: anyone reaching its pages
could pass a verification.

``sign_valify_webhook`` (from :mod:`verification_link.sandbox.signing`, standard library only) signs
a body the way the Valify emulator's webhook is signed.
"""

from .signing import sign_valify_webhook

__all__ = ["sign_valify_webhook"]

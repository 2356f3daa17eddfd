"""The example site's aliases of the sandbox's hosted-provider emulators: each the real provider
class, pointed at ``<PUBLIC_BASE_URL>/sandbox/<name>``, with the credentials the sandbox derives
from ``SECRET_KEY`` (``sandbox_credentials``). Read by ``settings.py`` before Django is set up:
standard library only."""

from __future__ import annotations

from collections.abc import Mapping


def emulator_aliases(keys: Mapping[str, str], base_url: str) -> dict[str, dict]:
    """``{"sandbox_<name>": alias settings}`` for every emulator."""
    sandbox = f"{base_url}/sandbox"
    return {
        "sandbox_stripe_identity": {
            "BACKEND": "verification_link.providers.stripe_identity.StripeIdentityProvider",
            "API_KEY": keys["STRIPE_IDENTITY_API_KEY"],
            "WEBHOOK_SECRETS": [keys["STRIPE_IDENTITY_WEBHOOK_SECRET"]],
            "BASE_URL": f"{sandbox}/stripe_identity",
            "SCOPES": ["document", "face_match"],
        },
        "sandbox_persona": {
            "BACKEND": "verification_link.providers.persona.PersonaProvider",
            "API_KEY": keys["PERSONA_API_KEY"],
            "TEMPLATE_ID": "itmpl_sandbox",
            "BASE_URL": f"{sandbox}/persona",
            "HOSTED_URL": f"{sandbox}/persona/verify",
            "WEBHOOK_SECRETS": [keys["PERSONA_WEBHOOK_SECRET"]],
        },
        "sandbox_onfido": {
            "BACKEND": "verification_link.providers.onfido.OnfidoProvider",
            "API_TOKEN": keys["ONFIDO_API_TOKEN"],
            "WORKFLOW_ID": "00000000-0000-4000-8000-000000000000",  # any UUID: the emulator runs one flow
            "BASE_URL": f"{sandbox}/onfido",
            "WEBHOOK_SECRETS": [keys["ONFIDO_WEBHOOK_SECRET"]],
        },
        "sandbox_sumsub": {
            "BACKEND": "verification_link.providers.sumsub.SumsubProvider",
            "BASE_URL": f"{sandbox}/sumsub",
            "APP_TOKEN": keys["SUMSUB_APP_TOKEN"],
            "SECRET_KEY": keys["SUMSUB_SECRET_KEY"],
            "LEVEL_NAME": "basic-kyc-level",
            "WEBHOOK_SECRETS": [keys["SUMSUB_WEBHOOK_SECRET"]],
        },
        "sandbox_didit": {
            "BACKEND": "verification_link.providers.didit.DiditProvider",
            "API_KEY": keys["DIDIT_API_KEY"],
            "WORKFLOW_ID": "sandbox-workflow",  # any string: the emulator runs one flow
            "BASE_URL": f"{sandbox}/didit",
            "WEBHOOK_SECRETS": [keys["DIDIT_WEBHOOK_SECRET"]],
        },
        "sandbox_veriff": {
            "BACKEND": "verification_link.providers.veriff.VeriffProvider",
            "API_KEY": keys["VERIFF_API_KEY"],
            "SHARED_SECRET": keys["VERIFF_SHARED_SECRET"],
            "BASE_URL": f"{sandbox}/veriff",
        },
    }

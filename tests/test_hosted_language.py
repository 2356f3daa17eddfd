"""The user's language reaches the hosted page only where the provider is documented to speak it
(``BaseProvider.hosted_languages``): an unknown code could make the create fail."""

import pytest

from verification_link.providers.base import BaseProvider
from verification_link.providers.didit import DiditProvider
from verification_link.providers.onfido import OnfidoProvider
from verification_link.providers.persona import PersonaProvider
from verification_link.providers.valify import ValifyProvider


@pytest.mark.parametrize(
    ("provider", "code", "spelled"),
    [
        (ValifyProvider, "ar", "ar"),
        (ValifyProvider, "AR_eg", "ar"),
        (ValifyProvider, "fr", ""),
        (OnfidoProvider, "fr", "fr_FR"),
        (OnfidoProvider, "pt-br", "pt_PT"),
        (OnfidoProvider, "ar", ""),
        (DiditProvider, "pt-br", "pt-BR"),
        (DiditProvider, "pt", "pt"),
        (DiditProvider, "zh-hant", "zh-TW"),
        (DiditProvider, "zh-hans", "zh-CN"),
        (DiditProvider, "zh-hk", "zh-TW"),
        (DiditProvider, "zh-tw", "zh-TW"),
        (PersonaProvider, "de", ""),  # no documented list: nothing sent
        (BaseProvider, "en", ""),
        (ValifyProvider, "", ""),
        (ValifyProvider, None, ""),
        (ValifyProvider, "ar" + "-x" * 20, ""),
    ],
)
def test_the_users_language_in_the_providers_spelling_or_nothing(provider, code, spelled):
    assert provider.hosted_language(code) == spelled

"""The OOTO callback keeps the same inbound-endpoint contract as the webhooks (shared test base)."""

import pytest

from verification_link import services
from verification_link.models import VerificationEvent

from .inbound_base import InboundEndpointContract


class TestOotoCallback(InboundEndpointContract):
    kind = VerificationEvent.Kind.CALLBACK
    accepted_statuses = (202,)

    @pytest.fixture(autouse=True)
    def _fake(self, fake_ooto, user):
        self.fake, self.user = fake_ooto, user

    def make_session(self):
        return services.start_verification(user=self.user, scopes=["liveness"])

    def url(self, session):
        return f"/verify/callback/ooto/{session.callback_secret}/"

    def unknown_urls(self, session):
        return [
            f"/verify/callback/ooto/{'x' * 43}/",  # unknown secret
            f"/verify/callback/ooto_eu/{session.callback_secret}/",  # right secret, other alias
            f"/verify/callback/nope/{session.callback_secret}/",  # unknown alias
        ]

    def payload(self, session):
        return self.fake.status_body(session)

    def complete_at_provider(self, session):
        self.fake.complete(session)  # the callback body is never applied: the app asks the provider

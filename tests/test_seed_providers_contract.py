"""OOTO and Valify on the reusable provider test base (``tests/provider_contract.py``), as every
new provider is: the same create, error, webhook, duplicate, ordering, polling and secrecy tests.

OOTO's inbound request is its per-session callback: unsigned, its secret the URL's last segment,
a hint that the services confirm by asking Get Status (``WEBHOOK_PULLS``). Valify posts signed
account-level webhooks and cannot be polled.
"""

import json
import re

import responses

from verification_link.providers import get_provider
from verification_link.testing import ooto_result

from .provider_contract import APPROVED, DECLINED, ProviderContract


class TestOotoContract(ProviderContract):
    ALIAS = "ooto_contract"
    BASE_URL = "https://ooto.test"
    SECRET = "unused: the callback URL holds the session's own secret"
    CREATE_ENDPOINT = ("POST", "https://ooto.test/api/v1.0/flow/sessions")
    WEBHOOK_PULLS = True
    ACCEPTED_CODES = (200, 202)
    ROTATES = False
    HAS_VERDICT = False
    KEEPS_PROVIDER_STATUS = False
    HAS_DELIVERY_ID = False

    def alias_config(self):
        return {
            "BACKEND": "verification_link.providers.ooto.OotoProvider",
            "APP_ID": "contract-app",
            "APP_KEY": "ooto-contract-key-SECRET",
            "BASE_URL": self.BASE_URL,
        }

    def secret_values(self):
        return ["ooto-contract-key-SECRET"]

    def external_id(self):
        return "ooto-session-1"

    def hosted_url(self):
        return "https://flow.ooto.test/flow/tok-contract-1"

    def mock_create(self, rsps):
        rsps.add(
            responses.POST,
            self.CREATE_ENDPOINT[1],
            json={"sessionId": self.external_id(), "token": "tok-contract-1", "url": self.hosted_url()},
        )

    def assert_create_request(self, calls):
        (call,) = calls
        assert call.request.headers["APP-KEY"] == "ooto-contract-key-SECRET"
        body = json.loads(call.request.body)
        assert body["scopes"] == ["liveness"] and "/verify/callback/ooto_contract/" in body["callbackUrl"]

    def answer(self, outcome):
        if outcome == APPROVED:
            return {"status": "DONE", "result": ooto_result(["liveness"])}
        if outcome == DECLINED:
            return {"status": "FAILED", "result": ooto_result(["liveness"], fine=False)}
        return {"status": "IN_PROGRESS", "nextStep": "LIVENESS"}

    def mock_status(self, rsps, session, outcome):
        rsps.add(responses.GET, re.compile(r"https://ooto\.test/api/v1\.0/flow/sessions/.*"), json=self.answer(outcome))

    def webhook(self, session, outcome, *, secret=None, timestamp=None, delivery="evt_1"):
        return json.dumps(self.answer(outcome)).encode(), {}

    def inbound_url(self, session, secret=None):
        path_secret = session.callback_secret if secret in (None, self.SECRET) else secret
        return f"/verify/callback/{self.ALIAS}/{path_secret}/"


class TestValifyContract(ProviderContract):
    ALIAS = "valify_contract"
    BASE_URL = "https://valify.test"
    SECRET = "valify-contract-whsec-SECRET"
    OLD_SECRET = "valify-contract-old-whsec-SECRET"
    SIGNS_TIMESTAMP = True
    CREATE_ENDPOINT = ("POST", "https://valify.test/api/link/v1/request/")
    SIGNATURE_HEADER = "X-Valify-Signature"
    HAS_VERDICT = False
    HAS_DELIVERY_ID = False  # Valify names no delivery (with WEBHOOK_AUTH "standard", webhook-id does)

    def alias_config(self):
        return {
            "BACKEND": "verification_link.providers.valify.ValifyProvider",
            "API_KEY": "valify-contract-key-SECRET",
            "BASE_URL": self.BASE_URL,
            "WEBHOOK_SECRETS": [self.SECRET, self.OLD_SECRET],
        }

    def external_id(self):
        return "00000000-0000-0000-0000-00000000c0de"  # Valify names a link by its session token only

    def hosted_url(self):
        return "https://valify.test/?token=00000000-0000-0000-0000-00000000c0de"

    def mock_create(self, rsps):
        rsps.add(
            responses.POST,
            self.CREATE_ENDPOINT[1],
            json={"session_token": "00000000-0000-0000-0000-00000000c0de", "redirect_url": self.hosted_url()},
        )

    def assert_create_request(self, calls):
        (call,) = calls
        assert call.request.headers["X-Valify-Api-Key"] == "valify-contract-key-SECRET"
        assert json.loads(call.request.body)["reference_id"]

    def mock_status(self, rsps, session, outcome):
        raise AssertionError("Valify cannot be polled")

    def webhook(self, session, outcome, *, secret=None, timestamp=None, delivery="evt_1"):
        status = {APPROVED: "success", DECLINED: "failed"}.get(outcome, "pending")
        result = {"face_match": {"match": outcome == APPROVED, "score": 0.9}, "liveness": {"passed": True}}
        body = json.dumps(
            {"event": "verification.completed", "session_token": session.token, "status": status, "result": result}
        ).encode()
        verifier = get_provider(self.ALIAS).webhook_verifier()
        return body, verifier.sign(body, secret=secret or self.SECRET, timestamp=timestamp)

"""A provider written only for a test: proves a new provider is one module and nothing else."""

from verification_link.providers.base import BaseProvider, CreatedSession, StatusReport


class AcmeProvider(BaseProvider):
    display_name = "Acme"
    pollable = True
    supported_scopes = ("face",)
    default_scopes = ("face",)
    required_settings = ("API_TOKEN",)
    default_base_url = "https://acme.example"
    status_map = {"ok": "DONE", "ko": "FAILED", "busy": "IN_PROGRESS"}

    def auth_headers(self):
        return {"Authorization": f"Bearer {self.setting('API_TOKEN')}"}

    def create_session(self, request):
        body = self.call("POST", "/sessions", operation="create", json={"scopes": request.scopes})
        return CreatedSession(url=body["link"], token=body["id"], external_id=body["id"])

    def get_status(self, session, *, timeout=None):
        body = self.call("GET", f"/sessions/{session.token}", operation="status", timeout=timeout)
        return StatusReport(status=self.status_map[body["state"]])

    def scope_outcomes(self, scopes, result):
        return dict.fromkeys(scopes, True)

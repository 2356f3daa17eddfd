from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SandboxConfig(AppConfig):
    """The sandbox emulator app (``verification_link.sandbox``)."""

    name = "verification_link.sandbox"
    # A label of its own so it can sit beside the core ``verification_link`` app.
    label = "verification_link_sandbox"
    verbose_name = _("Verification link sandbox")
    # Pinned so the migration does not depend on the site's DEFAULT_AUTO_FIELD.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the check that keeps the sandbox out of production)

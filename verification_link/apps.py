"""The app's configuration: checks, the provider cache reset and log filters wired up at start."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class VerificationLinkConfig(AppConfig):
    name = "verification_link"
    verbose_name = _("Identity verification")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import (
            checks,  # noqa: F401  (registers the system checks)
            providers,  # noqa: F401  (connects the settings-changed cache reset)
        )
        from .logfields import install_log_fields
        from .logsafe import install_log_filters
        from .metrics import install_metrics

        install_log_filters()
        install_log_fields()  # session_id, provider, source on every record of ours
        install_metrics()  # Prometheus, when prometheus_client is installed

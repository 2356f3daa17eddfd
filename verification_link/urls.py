"""Include with ``path("verify/", include("verification_link.urls"))``; namespace ``verification_link``."""

from django.urls import include, path, re_path

from . import views

app_name = "verification_link"

urlpatterns = [
    path("start/", views.start_view, name="start"),
    path("s/<uuid:pk>/", views.detail_view, name="detail"),
    path("s/<uuid:pk>/status.json", views.status_view, name="status"),
    path("s/<uuid:pk>/qr.svg", views.qr_view, name="qr"),
    path("s/<uuid:pk>/return/", views.return_view, name="return"),
    path("s/<uuid:pk>/retry/", views.retry_view, name="retry"),
    path("s/<uuid:pk>/cancel/", views.cancel_view, name="cancel"),
    path("callback/<str:provider>/<str:secret>/", views.callback_view, name="callback"),
    path("webhook/<str:provider>/", views.webhook_view, name="webhook"),
    # For providers authenticated by a secret in the URL (WEBHOOK_AUTH = "path").
    path("webhook/<str:provider>/<str:secret>/", views.webhook_view, name="webhook_secret"),
    # Anything else there answers our own 404, so Django's "Not Found: <path>" never logs a secret.
    re_path(r"^(?:callback|webhook)/(?P<rest>.*)$", views.inbound_not_found),
    path("api/", include("verification_link.api.urls")),
]

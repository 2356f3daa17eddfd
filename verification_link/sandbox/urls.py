"""URLs of the sandbox. Mount with ``path("sandbox/", include("verification_link.sandbox.urls"))``.

Everything OOTO lives under ``ooto/``: the base URL to give the OOTO client is
``<origin>/sandbox/ooto``.
"""

from django.urls import path

from . import views

app_name = "verification_link_sandbox"

urlpatterns = [
    path("ooto/api/v1.0/flow/sessions", views.OotoCreateSessionView.as_view(), name="ooto_create"),
    path("ooto/api/v1.0/flow/sessions/<str:token>", views.OotoSessionStatusView.as_view(), name="ooto_status"),
    path("ooto/flow/<str:token>", views.OotoFlowView.as_view(), name="ooto_flow"),
]

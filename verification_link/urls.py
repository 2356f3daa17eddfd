"""Include with ``path("verify/", include("verification_link.urls"))``; namespace ``verification_link``."""

from django.urls import path

from . import views

app_name = "verification_link"

urlpatterns = [
    path("s/<uuid:pk>/return/", views.return_view, name="return"),
    path("callback/<str:provider>/<str:secret>/", views.callback_view, name="callback"),
]

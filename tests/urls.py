from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("verify/", include("verification_link.urls")),
    path("sandbox/", include("verification_link.sandbox.urls")),
]

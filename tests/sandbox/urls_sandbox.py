from django.urls import include, path

urlpatterns = [path("sandbox/", include("verification_link.sandbox.urls"))]

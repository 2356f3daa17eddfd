from demo import views
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("", views.home, name="home"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Django's set_language view (POST): the layout's language switch.
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("verify/", include("verification_link.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
]
if apps.is_installed("verification_link.sandbox"):  # only with VL_PROVIDER=sandbox or sandbox_valify
    urlpatterns.append(path("sandbox/", include("verification_link.sandbox.urls")))

"""A site's own admin for the sessions: a plain ModelAdmin on an AdminSite of its own (the package's
change-list template still applies to it, by its path)."""

from django.contrib import admin
from django.urls import path

from verification_link.models import VerificationSession

site = admin.AdminSite(name="plain_admin")
site.register(VerificationSession, admin.ModelAdmin)

urlpatterns = [path("plain-admin/", site.urls)]

"""The demo shop's own pages: the home page (the user's verification state and attempts) and the
``/favicon.ico`` that browsers and crawlers ask for without reading the layout's icon link."""

from django.http import HttpResponsePermanentRedirect
from django.shortcuts import render
from django.templatetags.static import static
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

from verification_link.models import VerificationSession

from .models import Profile

#: The shop's icon, linked from the layout (``demo/base.html``).
FAVICON = "demo/favicon.svg"


def home(request):
    context = {}
    if request.user.is_authenticated:
        context["profile"] = Profile.objects.filter(user=request.user).first()
        context["sessions"] = VerificationSession.objects.filter(user=request.user).order_by("-created_at")[:5]
    return render(request, "demo/home.html", context)


@require_safe
@cache_control(max_age=86400, public=True)
def favicon(request):
    """``/favicon.ico``: a permanent redirect to the SVG icon among the static files."""
    return HttpResponsePermanentRedirect(static(FAVICON))

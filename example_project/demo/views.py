from django.shortcuts import render

from verification_link.models import VerificationSession

from .models import Profile


def home(request):
    context = {}
    if request.user.is_authenticated:
        context["profile"] = Profile.objects.filter(user=request.user).first()
        context["sessions"] = VerificationSession.objects.filter(user=request.user).order_by("-created_at")[:5]
    return render(request, "demo/home.html", context)

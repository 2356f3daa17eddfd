"""URLs of the sandbox. Mount with ``path("sandbox/", include("verification_link.sandbox.urls"))``.

Everything OOTO lives under ``ooto/``: the base URL to give the OOTO client is
``<origin>/sandbox/ooto``. Everything Valify lives under ``valify/``: its base URL is
``<origin>/sandbox/valify`` (Create link at ``<base>/api/link/v1/request/``, the hosted flow at
``<base>/?token=<session_token>``, as on ``verify.valifysolutions.com``).

Each hosted-provider emulator (Stripe Identity, Persona, Onfido, Veriff, Sumsub, Didit; see
``hosted.py``) lives under ``<name>/`` (its base URL ``<origin>/sandbox/<name>``), its hosted page at
``hosted/<name>/<page secret>/``.

Every view answers 404 while ``DEBUG`` is off, unless
``VERIFICATION_LINK_SANDBOX["ALLOW_WITHOUT_DEBUG"]`` is ``True`` (see ``common.only_when_allowed``).
"""

from django.urls import URLPattern, URLResolver, include, path

from . import valify_views, views
from .common import only_when_allowed as guard
from .emulators import emulator_modules
from .hosted import EmulatorPageView

app_name = "verification_link_sandbox"

urlpatterns: list[URLPattern | URLResolver] = [
    path("ooto/api/v1.0/flow/sessions", guard(views.OotoCreateSessionView.as_view()), name="ooto_create"),
    path("ooto/api/v1.0/flow/sessions/<str:token>", guard(views.OotoSessionStatusView.as_view()), name="ooto_status"),
    path("ooto/flow/<str:token>", guard(views.OotoFlowView.as_view()), name="ooto_flow"),
    path("valify/api/link/v1/request/", guard(valify_views.ValifyCreateLinkView.as_view()), name="valify_create"),
    path("valify/", guard(valify_views.ValifyFlowView.as_view()), name="valify_flow"),
    path("hosted/<str:name>/<str:secret>/", guard(EmulatorPageView.as_view()), name="hosted"),
]
# Each hosted-provider emulator's API under ``<name>/`` (its views guarded by the module itself,
# with ``guard`` too: the wrapper is applied here to every pattern, so none can forget it).
for _module in emulator_modules():
    _guarded = [URLPattern(p.pattern, guard(p.callback), p.default_args, p.name) for p in _module.urlpatterns]
    urlpatterns.append(path(f"{_module.NAME}/", include(_guarded)))

"""The hosted-provider emulators, one module each (see :mod:`verification_link.sandbox.hosted`).

``EMULATORS`` names them; ``urls.py`` mounts each module's ``urlpatterns`` under ``<name>/``.
Importing a module registers its ``Emulator`` subclass.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

EMULATORS = ("stripe_identity", "persona", "onfido", "veriff", "sumsub", "didit")


def emulator_modules() -> list[ModuleType]:
    """The emulator modules that exist (each provider's lands on its own), imported."""
    modules = []
    for name in EMULATORS:
        try:
            modules.append(import_module(f"{__name__}.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    return modules

"""Settings of the example site.

Embedded defaults run everything with no credentials and no services: SQLite, the built-in
sandbox provider, Celery eager. Environment variables switch to the real thing:

- ``VL_PROVIDER``: ``sandbox`` (default: the OOTO emulator), ``sandbox_valify`` (the Valify emulator),
  ``sandbox_stripe_identity``, ``sandbox_persona``, ``sandbox_onfido``, ``sandbox_veriff``,
  ``sandbox_sumsub``, ``sandbox_didit`` (each provider's real client against its emulator, no
  credentials), ``ooto`` (needs ``OOTO_APP_ID``, ``OOTO_APP_KEY``, optional ``OOTO_BASE_URL``) or
  ``valify`` (needs ``VALIFY_API_KEY``, ``VALIFY_WEBHOOK_SECRET``; point Valify's account webhook at
  ``<PUBLIC_BASE_URL>/verify/webhook/valify/``). The sandbox app is installed only for the sandbox
  aliases, and users may start only with the chosen provider (``USER_PROVIDERS``).
- ``PUBLIC_BASE_URL``: the site's public origin (default ``http://127.0.0.1:8000``).
- ``DATABASE_URL``: ``postgres://user:password@host:port/name`` (default: SQLite ``VL_DEMO_DB``);
  ``DATABASE_OPTIONS``: its connection options as a JSON object (``{"pool": true}``), ``CONN_MAX_AGE``.
- ``REDIS_URL``: a Celery broker; tasks then run on a worker (``celery -A example_project worker -B``).
- ``VL_MAX_ATTEMPTS``: at most this many starts per user a day (default: no limit).
- ``DJANGO_DEBUG`` (default on), ``DJANGO_SECRET_KEY``, ``DJANGO_ALLOWED_HOSTS``.

The site speaks English, Arabic, French and Spanish (``LANGUAGES``; ``LocaleMiddleware`` and the
layout's language switch pick one), and its templates come before the app's: the ``demo`` app's
``verification_link/base.html`` gives the app's pages the shop's layout.
"""

import json
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.utils.translation import gettext_lazy

# Standard library only: safe in a settings module, before Django is set up.
from verification_link.sandbox.credentials import sandbox_credentials

from .emulator_aliases import emulator_aliases

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-project-insecure-key-do-not-use-in-production")
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")
PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = [PUBLIC_BASE_URL]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    # Before verification_link: the site's templates override the app's, as docs/handoff.rst teaches;
    # demo/templates/verification_link/base.html gives the app's pages the shop's layout.
    "demo",
    "verification_link",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The user's language (the layout's language switch, then Accept-Language): after the
    # session, before CommonMiddleware, as Django's documentation places it.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


def database_from_url(url: str) -> dict:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError("DATABASE_URL must be postgres://user:password@host:port/name")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": unquote(parts.hostname or ""),
        "PORT": str(parts.port or ""),
    }


if os.environ.get("DATABASE_URL"):
    # DATABASE_OPTIONS: a JSON object of connection options, e.g. '{"pool": true}' (Django 5.1+
    # with psycopg[pool]) or '{"server_side_binding": true}' — docs/performance.rst measures them.
    database_options = json.loads(os.environ.get("DATABASE_OPTIONS") or "{}")
    DATABASES = {
        "default": {
            **database_from_url(os.environ["DATABASE_URL"]),
            # A new PostgreSQL connection per request costs ~9 ms: keep them (benchmarks/load.py).
            # A pool keeps them instead, and Django refuses both at once.
            "CONN_MAX_AGE": 0 if database_options.get("pool") else int(os.environ.get("CONN_MAX_AGE", "60")),
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": database_options,
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("VL_DEMO_DB", str(BASE_DIR / "db.sqlite3")),
            # Django's default (deferred) transactions, as a new site has them: the app takes the
            # write lock first in each of its transactions (docs/databases.rst). The sandbox
            # calls back into the same server from another thread: writers wait up to 20 s in turn.
            "OPTIONS": {"timeout": 20},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en"
# The languages of the layout's switch; Arabic is written right to left (the pages' ``dir``).
# Lazy: translated when shown, never at import (settings load before the translation machinery).
LANGUAGES = [
    ("en", gettext_lazy("English")),
    ("ar", gettext_lazy("Arabic")),
    ("fr", gettext_lazy("French")),
    ("es", gettext_lazy("Spanish")),
]
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

# -- the REST API: session and token authentication, an OpenAPI schema at /api/schema/ ------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # The scope of django-verification-link's API (provider calls: keep it modest in production).
    "DEFAULT_THROTTLE_RATES": {"verification_link": os.environ.get("VL_API_THROTTLE", "60/minute")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "django-verification-link API",
    "DESCRIPTION": "Hosted identity-verification sessions of the signed-in user.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}

# -- Celery: eager (in-process) unless a broker is given ------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True

# -- verification providers ------------------------------------------------------------------------------
PROVIDER = os.environ.get("VL_PROVIDER", "sandbox")
#: The hosted-provider emulators of the sandbox, each behind the real provider class.
EMULATORS = ("stripe_identity", "persona", "onfido", "veriff", "sumsub", "didit")
SANDBOX_ALIASES = ("sandbox", "sandbox_valify", *(f"sandbox_{name}" for name in EMULATORS))
PROVIDERS: dict = {}
if PROVIDER in SANDBOX_ALIASES:
    # The built-in emulators, served by this very site: the real clients run against them over HTTP.
    # Installed only while in use: with a real provider, nobody can be verified by a sandbox page.
    # Its credentials are derived from SECRET_KEY (the sandbox's own defaults): no fixed strings.
    INSTALLED_APPS.insert(INSTALLED_APPS.index("verification_link") + 1, "verification_link.sandbox")
    sandbox_keys = sandbox_credentials(SECRET_KEY)  # lowercase: a local, not a Django setting
    PROVIDERS["sandbox"] = {
        "BACKEND": "verification_link.providers.ooto.OotoProvider",
        "APP_ID": sandbox_keys["OOTO_APP_ID"],
        "APP_KEY": sandbox_keys["OOTO_APP_KEY"],
        "BASE_URL": f"{PUBLIC_BASE_URL}/sandbox/ooto",
        "SCOPES": ["liveness", "deepfake"],
        "TTL": 3600,
    }
    PROVIDERS["sandbox_valify"] = {
        "BACKEND": "verification_link.providers.valify.ValifyProvider",
        "API_KEY": sandbox_keys["VALIFY_API_KEY"],
        "BASE_URL": f"{PUBLIC_BASE_URL}/sandbox/valify",
        "WEBHOOK_SECRETS": [sandbox_keys["VALIFY_WEBHOOK_SECRET"]],
        "TTL": 3600,
    }
    # The Valify emulator's account-level webhook points back at this site, signed with the secret above.
    VERIFICATION_LINK_SANDBOX = {"VALIFY_WEBHOOK_URL": "/verify/webhook/sandbox_valify/"}
    # Each emulator posts its signed webhooks to /verify/webhook/sandbox_<name>/ (its default).
    PROVIDERS.update(emulator_aliases(sandbox_keys, PUBLIC_BASE_URL))
elif PROVIDER == "ooto":
    PROVIDERS["ooto"] = {
        "BACKEND": "verification_link.providers.ooto.OotoProvider",
        "APP_ID": os.environ.get("OOTO_APP_ID", ""),
        "APP_KEY": os.environ.get("OOTO_APP_KEY", ""),
        "BASE_URL": os.environ.get("OOTO_BASE_URL", "https://cloud.ooto-ai.com"),
        "SCOPES": os.environ.get("OOTO_SCOPES", "liveness,deepfake").split(","),
    }
elif PROVIDER == "valify":
    PROVIDERS["valify"] = {
        "BACKEND": "verification_link.providers.valify.ValifyProvider",
        "API_KEY": os.environ.get("VALIFY_API_KEY", ""),
        "BASE_URL": os.environ.get("VALIFY_BASE_URL", "https://verify.valifysolutions.com"),
        "WEBHOOK_SECRETS": [s for s in os.environ.get("VALIFY_WEBHOOK_SECRET", "").split(",") if s],
    }

VERIFICATION_LINK = {
    "DEFAULT_PROVIDER": PROVIDER,
    "PROVIDERS": PROVIDERS,
    # Users start only with the chosen provider; staff (admin, shell) may use the other sandbox alias.
    "USER_PROVIDERS": [PROVIDER],
    "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
    # At most this many starts per user a day (unset: no limit); digits from the environment count.
    "MAX_ATTEMPTS": os.environ.get("VL_MAX_ATTEMPTS") or None,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "verification_link": {"handlers": ["console"], "level": os.environ.get("VL_LOG_LEVEL", "INFO")},
        # Server errors to the console too, not only to mail_admins when DEBUG is off.
        "django.request": {"handlers": ["console"], "level": "ERROR"},
    },
}

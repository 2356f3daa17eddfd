"""Settings for the package's own test suite.

SQLite by default. ``VL_TEST_DATABASE=postgres`` switches to PostgreSQL (``PGHOST``/``PGPORT``/
``PGUSER``/``PGDATABASE`` as libpq reads them), which the concurrency tests need.
"""

import json
import os
import tempfile

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]

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
    "verification_link",
    "verification_link.sandbox",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

try:  # only in the CI stage that checks the beat schedule against django-celery-beat
    import django_celery_beat  # noqa: F401

    INSTALLED_APPS.append("django_celery_beat")
except ImportError:
    pass

ROOT_URLCONF = "tests.urls"
STATIC_URL = "/static/"
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

if os.environ.get("VL_TEST_DATABASE") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("PGDATABASE", "postgres"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", ""),
            "PORT": os.environ.get("PGPORT", ""),
            # Connection options a site may set, tried by the benchmarks (docs/performance.rst):
            # VL_PG_OPTIONS='{"server_side_binding": true, "prepare_threshold": 1}'.
            "OPTIONS": json.loads(os.environ.get("VL_PG_OPTIONS") or "{}"),
        }
    }
else:
    # A file, not ":memory:": Django shares an in-memory test database between threads through
    # SQLite's shared cache, whose table locks behave unlike a site's database file. And no
    # ``transaction_mode``: Django's default (deferred) transactions, as a new site has them.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": ":memory:",
            "TEST": {"NAME": os.path.join(tempfile.gettempdir(), f"vl-tests-{os.getpid()}.sqlite3")},
            # How long a writer waits for the lock (Python's default is 5 s): above the longest
            # transaction even on a loaded 2-core CI machine, as docs/databases.rst advises.
            "OPTIONS": {"timeout": 20},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_THROTTLE_RATES": {"verification_link": "1000/minute"},
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

VERIFICATION_LINK = {
    "DEFAULT_PROVIDER": "ooto",
    "PROVIDERS": {
        "ooto": {
            "BACKEND": "verification_link.providers.ooto.OotoProvider",
            "APP_ID": "test-app-id",
            "APP_KEY": "test-app-key-SECRET",
            "BASE_URL": "https://cloud.ooto-ai.com",
            "SCOPES": ["liveness", "deepfake"],
            "TTL": 3600,
        },
        "ooto_eu": {
            "BACKEND": "verification_link.providers.ooto.OotoProvider",
            "APP_ID": "eu-app-id",
            "APP_KEY": "eu-app-key-SECRET",
            "BASE_URL": "https://eu.ooto.example",
        },
        # Two accounts of one backend, each with its own key and webhook secrets.
        "valify": {
            "BACKEND": "verification_link.providers.valify.ValifyProvider",
            "API_KEY": "valify-key-SECRET",
            "WEBHOOK_SECRETS": ["whsec-new-SECRET", "whsec-old-SECRET"],
        },
        "valify_b": {
            "BACKEND": "verification_link.providers.valify.ValifyProvider",
            "API_KEY": "valify-b-key-SECRET",
            "BASE_URL": "https://b.valify.example",
            "WEBHOOK_SECRETS": ["whsec-b-SECRET"],
            "LANG": "ar",
        },
    },
    "PUBLIC_BASE_URL": "https://www.example.com",
}

# DEBUG is off and the sandbox installed, as on a staging site: allowed explicitly, so that
# ``manage.py check`` (and makemigrations) with these settings warns (W004) instead of failing (E012).
VERIFICATION_LINK_SANDBOX = {"ALLOW_WITHOUT_DEBUG": True}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"verification_link": {"handlers": ["null"], "level": "DEBUG", "propagate": True}},
}

"""Settings of the bare floor app that ``benchmarks/load.py`` serves beside the example project.

Everything is the example project's — middleware, ``DATABASES`` (``CONN_MAX_AGE``, health checks),
``DEBUG`` from ``DJANGO_DEBUG``, logging, installed apps (the same models and tables) — imported from
its settings module, so the two servers cannot drift apart in configuration: a ratio between them
then measures the callback code and nothing else. Only the URLconf differs (``floor_app``).

Importable as ``benchmarks.floor_settings`` with the repository root on ``PYTHONPATH`` and the
example project's directory on ``sys.path`` (gunicorn's ``--chdir example_project`` puts it there).
"""

from example_project.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.floor_app"

# Importing the Celery app here makes ``shared_task``s bind to it when Django starts.
from .celery import app as celery_app

__all__ = ["celery_app"]

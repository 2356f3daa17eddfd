"""The REST API (Django REST framework): ``api/sessions/`` under the app's URLs."""

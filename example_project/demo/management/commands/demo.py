"""``manage.py demo [addrport]``: migrate, create the demo users, and serve the site."""

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Set up the demo (migrate, users demo/demo and admin/admin) and run the development server."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--setup-only", action="store_true", help="Migrate and create users, do not serve.")

    def handle(self, *args, addrport, setup_only, **options):
        call_command("migrate", interactive=False, verbosity=0)
        users = get_user_model().objects
        if not users.filter(username="demo").exists():
            users.create_user("demo", "demo@example.com", "demo")
        if not users.filter(username="admin").exists():
            users.create_superuser("admin", "admin@example.com", "admin")
        from rest_framework.authtoken.models import Token

        token, _ = Token.objects.get_or_create(user=users.get(username="demo"))
        self.stdout.write("Demo ready: log in as demo/demo (or admin/admin for the admin).")
        self.stdout.write(
            f"API: {addrport} /verify/api/sessions/ with 'Authorization: Token {token.key}'; schema at /api/schema/"
        )
        if not setup_only:
            # Threaded: the sandbox calls back into this same server while a request is running.
            call_command("runserver", addrport, use_threading=True, use_reloader=False)

"""``manage.py verification_link poll|expire|purge|lapse|erase --user <pk>|refresh <session id>``: the
sweeps without Celery, and erasure on request.

Provider calls run on a bounded thread pool (``--concurrency``, default ``POLL_CONCURRENCY``); on
SQLite, which takes one writer at a time, the threads write to the database one at a time.

Made for cron: one summary line on stdout; exit status 0 when every session went through, 1 when
any failed (the summary then goes to stderr), 2 for usage errors. A session fails when its provider
call does, or a database write or a site's receiver does for it: each is logged (logger
``verification_link``) and recorded on the session, and the sweep goes on with the others.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import services
from ...exceptions import ConfigurationError, ProviderError
from ...models import VerificationSession


class Command(BaseCommand):
    help = "Poll due verification sessions, expire overdue ones, or refresh one session."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{poll,expire,purge,lapse,refresh,erase}")
        for name, text in [
            ("poll", "Refresh every open session whose next poll time has come."),
            ("expire", "Expire open sessions past their expiry (after a last status check)."),
        ]:
            sweep = sub.add_parser(name, help=text)
            sweep.add_argument("--concurrency", type=int, default=None, help="Provider calls at once.")
        sub.add_parser(
            "purge",
            help="Scrub sensitive result parts and raw bodies past RETENTION_DAYS, and the bodies of "
            "requests that matched no session or were never authenticated.",
        )
        sub.add_parser(
            "lapse", help="Send verification_lapsed for approved verifications past VALID_FOR_DAYS (once each)."
        )
        erase = sub.add_parser("erase", help="Erase a user's identity data (status and decisions stay).")
        erase.add_argument("--user", required=True, help="The user's primary key.")
        erase.add_argument("--dry-run", action="store_true", help="Count the sessions; change nothing.")
        refresh = sub.add_parser("refresh", help="Ask the provider for one session's status now.")
        refresh.add_argument("session_id", help="The session's UUID.")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            self._run(action, options)
        except ConfigurationError as exc:  # the site's settings: one line naming the key
            raise CommandError(f"{action}: {exc}", returncode=2) from None

    def _run(self, action: str, options: dict[str, Any]) -> None:
        if action == "poll":
            self._summary("poll", services.run_poll_sweep(concurrency=options["concurrency"]))
        elif action == "expire":
            self._summary("expire", services.run_expiry_sweep(concurrency=options["concurrency"]))
        elif action == "purge":
            self.stdout.write(f"purge: {services.run_purge()}")
        elif action == "lapse":
            self.stdout.write(f"lapse: {services.lapse_verifications()} lapsed")
        elif action == "erase":
            self._erase(options["user"], dry_run=options["dry_run"])
        elif action == "refresh":
            self._refresh(options["session_id"])

    def _summary(self, name: str, result: services.SweepResult) -> None:
        line = f"{name}: {result}"
        if result.failed:
            raise CommandError(line, returncode=1)
        self.stdout.write(line)

    def _refresh(self, raw_id: str) -> None:
        try:
            session_id = uuid.UUID(raw_id)
        except ValueError:
            raise CommandError(f"refresh: {raw_id!r} is not a session id (UUID)", returncode=2) from None
        try:
            session = VerificationSession.objects.get(pk=session_id)
        except VerificationSession.DoesNotExist:
            raise CommandError(f"refresh: no session {session_id}", returncode=2) from None
        before = session.status
        try:
            session = services.refresh_session(session, source="admin")
        except ProviderError as exc:
            raise CommandError(f"refresh: {session_id}: {exc}", returncode=1) from None
        self.stdout.write(f"refresh: {session_id}: {before} -> {session.status}")

    def _erase(self, raw_pk: str, *, dry_run: bool) -> None:
        from django.contrib.auth import get_user_model

        model = get_user_model()
        try:
            user = model._default_manager.get(pk=model._meta.pk.to_python(raw_pk))
        except (model.DoesNotExist, ValidationError, ValueError):
            raise CommandError(f"erase: no user {raw_pk!r}", returncode=2) from None
        count = services.erase_user_data(user, dry_run=dry_run)
        verb = "would erase" if dry_run else "erased"
        self.stdout.write(f"erase: {verb} the identity data of {count} session{'s' if count != 1 else ''}")

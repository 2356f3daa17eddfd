"""``manage.py verification_link poll|expire|purge|lapse|erase --user <pk>|refresh <session id>``: the
sweeps without Celery, and erasure on request.

Provider calls run on a bounded thread pool (``--concurrency``, default ``POLL_CONCURRENCY``); on
SQLite, which takes one writer at a time, the threads write to the database one at a time.

Made for cron (docs/management.rst): exit status 0 when every session went through, 1 when any
failed (the summary then goes to stderr), 2 for a bad argument or setting (one line on stderr).
``-v 0`` prints nothing on success; 1 (the default) a progress line per batch and a summary; 2 a
line per session too; 3 timings. A session fails when its provider call does, or a database write
or a site's receiver does for it: each is logged (logger ``verification_link``) and recorded on
the session, and the sweep goes on with the others.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import Any

from django.core import checks
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DataError

from ... import conf, services
from ...exceptions import ConfigurationError, ProviderError
from ...models import VerificationSession
from ...services import expiry, retention
from ..conventions import FAILURES, OneLineParser, Progress, UsageError, one_line, positive_whole

SUB_COMMANDS = ("poll", "expire", "purge", "lapse", "refresh", "erase")


class Command(BaseCommand):
    help = (
        "The sweeps without Celery (poll, expire, purge, lapse), one user's erasure, or one session's refresh; "
        "exit status 0 ok, 1 some sessions failed, 2 a bad argument or setting."
    )
    verbosity = 1  # the run's -v, set by execute()

    def add_arguments(self, parser: CommandParser) -> None:
        # Before any argument is added: the sub-command parsers are made of the parser's class.
        parser.__class__ = OneLineParser
        sub = parser.add_subparsers(dest="action", required=True, metavar="sub-command")
        for name, text in [
            ("poll", "Refresh every open session whose next poll time has come."),
            ("expire", "Expire open sessions past their expiry (after a last status check)."),
        ]:
            sweep = sub.add_parser(name, help=text)
            sweep.add_argument(
                "--concurrency", type=positive_whole, default=None, help="Provider calls at once (1 or more)."
            )
        sub.choices["expire"].add_argument(
            "--dry-run", action="store_true", help="Count the overdue sessions; change nothing, ask no provider."
        )
        purge = sub.add_parser(
            "purge",
            help="Scrub sensitive result parts and raw bodies past RETENTION_DAYS, and the bodies of "
            "requests that matched no session or were never authenticated.",
        )
        purge.add_argument("--dry-run", action="store_true", help="Count what would be scrubbed; change nothing.")
        sub.add_parser(
            "lapse", help="Send verification_lapsed for approved verifications past VALID_FOR_DAYS (once each)."
        )
        erase = sub.add_parser("erase", help="Erase a user's identity data (status and decisions stay).")
        erase.add_argument("--user", required=True, help="The user's primary key.")
        erase.add_argument("--dry-run", action="store_true", help="Count the sessions; change nothing.")
        refresh = sub.add_parser("refresh", help="Ask the provider for one session's status now.")
        refresh.add_argument("session_id", help="The session's UUID.")
        for name in SUB_COMMANDS:
            _add_common_options(sub.choices[name])

    def run_from_argv(self, argv: list[str]) -> None:
        try:
            super().run_from_argv(argv)
        except UsageError as exc:  # from parsing, which Django does before it handles CommandError
            self.stderr.write(f"{type(exc).__name__}: {exc}")
            sys.exit(exc.returncode)

    def execute(self, *args: Any, **options: Any) -> Any:
        self.verbosity = int(options.get("verbosity", 1))
        return super().execute(*args, **options)

    def check(
        self,
        app_configs: Any = None,
        tags: Any = None,
        display_num_errors: bool = False,
        include_deployment_checks: bool = False,
        fail_level: int = checks.ERROR,
        databases: Any = None,
    ) -> None:
        """Django's system checks, an error among them one line naming the first (exit status 2);
        warnings are shown from verbosity 2: at cron's verbosity they would be mailed each run."""
        issues = checks.run_checks(
            app_configs=app_configs,
            tags=tags,
            include_deployment_checks=include_deployment_checks,
            databases=databases,
        )
        serious = [issue for issue in issues if issue.is_serious(fail_level) and not issue.is_silenced()]
        if serious:
            more = f" (and {len(serious) - 1} more: see manage.py check)" if len(serious) > 1 else ""
            raise UsageError(f"system check {serious[0].id}: {serious[0].msg}{more}")
        if self.verbosity >= 2:
            super().check(app_configs, tags, display_num_errors, include_deployment_checks, fail_level, databases)

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            self._run(action, options)
        except ConfigurationError as exc:  # the site's settings: one line naming the key
            raise UsageError(f"{action}: {exc}") from None

    def say(self, line: str, *, at: int = 1) -> None:
        if self.verbosity >= at:
            self.stdout.write(line)

    def _run(self, action: str, options: dict[str, Any]) -> None:
        # A request falls back on the default of a wrong key that guards nothing (and logs it); a sweep
        # run by hand or by cron says so instead, exit status 2, as the system checks would.
        for name in conf.TOP_LEVEL:
            if name not in conf.RESOLVED_ELSEWHERE:
                conf.validated(name)
        if action in ("poll", "expire"):
            concurrency = _concurrency(action, options.get("concurrency"))
            if action == "expire" and options.get("dry_run"):
                self._expire_dry_run()
                return
            progress = Progress(action, self.stdout, self.verbosity)
            run = services.run_poll_sweep if action == "poll" else services.run_expiry_sweep
            result = run(concurrency=concurrency, on_batch=progress)
            self._finish(progress, str(result), result.failed, concurrency=concurrency or conf.get("POLL_CONCURRENCY"))
        elif action == "purge":
            self._purge(dry_run=bool(options.get("dry_run")))
        elif action == "lapse":
            progress = Progress("lapse", self.stdout, self.verbosity)
            lapsed = services.lapse_verifications(on_batch=progress)
            failed = progress.latest.failed
            self._finish(progress, f"{lapsed} lapsed" + (f", {failed} failed" if failed else ""), failed)
        elif action == "erase":
            self._erase(options["user"], dry_run=bool(options.get("dry_run")))
        elif action == "refresh":
            self._refresh(options["session_id"])

    def _finish(self, progress: Progress, summary: str, failed: int, **details: Any) -> None:
        """The summary: on stdout, or as the error (stderr, exit status 1) when sessions failed."""
        line = f"{progress.name}: {summary}"
        if self.verbosity >= 3:
            self.stdout.write(progress.timing(**details))
        if failed:
            raise CommandError(line, returncode=FAILURES)
        self.say(line)

    def _expire_dry_run(self) -> None:
        started = time.monotonic()
        overdue = expiry.overdue_sessions()
        if self.verbosity >= 2:  # one query, read in chunks: 50,000 ids stay cheap
            for pk in overdue.values_list("pk", flat=True).iterator(chunk_size=2000):
                self.stdout.write(f"expire: session {pk}: would be expired (after a last status check)")
        self.say(f"expire: dry run: {_sessions(overdue.count())} would be expired; nothing changed")
        self.say(f"expire: {time.monotonic() - started:.3f} s", at=3)

    def _purge(self, *, dry_run: bool) -> None:
        if dry_run:
            started = time.monotonic()
            if self.verbosity >= 2:
                due = retention.sessions_due_for_purge().values_list("pk", flat=True)
                for pk in due.iterator(chunk_size=2000):
                    self.stdout.write(f"purge: session {pk}: would be scrubbed")
            counted = retention.count_purge()
            requests = counted.inbound_events
            self.say(
                f"purge: dry run: {_sessions(counted.sessions)} and {requests} unmatched or unauthenticated "
                f"request{'s' if requests != 1 else ''} would be scrubbed; nothing changed"
            )
            self.say(f"purge: {time.monotonic() - started:.3f} s", at=3)
            return
        progress = Progress("purge", self.stdout, self.verbosity)
        result = services.run_purge(on_batch=progress)
        failed = progress.latest.failed
        self._finish(progress, str(result) + (f", {failed} failed" if failed else ""), failed)

    def _refresh(self, raw_id: str) -> None:
        started = time.monotonic()
        try:
            session_id = uuid.UUID(raw_id)
        except ValueError:
            raise UsageError(f"refresh: {raw_id!r} is not a session id (UUID)") from None
        try:
            session = VerificationSession.objects.get(pk=session_id)
        except VerificationSession.DoesNotExist:
            raise UsageError(f"refresh: no session {session_id}") from None
        before = session.status
        try:
            session = services.refresh_session(session, source="admin")
        except ProviderError as exc:
            raise CommandError(f"refresh: {session_id}: {one_line(exc)}", returncode=FAILURES) from None
        self.say(f"refresh: {session_id}: {before} -> {session.status}")
        self.say(f"refresh: {time.monotonic() - started:.3f} s", at=3)

    def _erase(self, raw_pk: str, *, dry_run: bool) -> None:
        from django.contrib.auth import get_user_model

        started = time.monotonic()
        model = get_user_model()
        try:
            pk = model._meta.pk.to_python(raw_pk) if model._meta.pk else raw_pk
        except (ValidationError, ValueError, TypeError):
            raise UsageError(f"erase: no user {raw_pk!r} ({raw_pk!r} is not a user id)") from None
        try:
            user = model._default_manager.get(pk=pk)
        except (model.DoesNotExist, ValidationError, ValueError, TypeError, OverflowError, DataError):
            # OverflowError (SQLite), DataError (PostgreSQL): a number the column cannot hold.
            raise UsageError(f"erase: no user {raw_pk!r}") from None
        sessions = []
        if self.verbosity >= 2:  # before: an erased session keeps its id, but one query, not one each
            sessions = list(
                VerificationSession.objects.filter(user=user).order_by("created_at").values_list("pk", flat=True)
            )
        count = services.erase_user_data(user, dry_run=dry_run)
        for session_pk in sessions:
            self.stdout.write(f"erase: session {session_pk}: {'would be erased' if dry_run else 'erased'}")
        verb = "would erase" if dry_run else "erased"
        self.say(f"erase: {verb} the identity data of {_sessions(count)}")
        self.say(f"erase: {time.monotonic() - started:.3f} s", at=3)


def _sessions(count: int) -> str:
    return f"{count} session{'s' if count != 1 else ''}"


def _add_common_options(parser: CommandParser) -> None:
    """Django's options also after the sub-command (``poll -v 0``), where argparse reads only the
    sub-command's own. Their defaults are SUPPRESS: a value given before the sub-command stands."""
    parser.add_argument(
        "-v",
        "--verbosity",
        type=int,
        choices=[0, 1, 2, 3],
        default=argparse.SUPPRESS,
        help="0 silent on success, 1 progress and summary, 2 a line per session, 3 timings.",
    )
    for flag, text in [("--traceback", "Raise on CommandError."), ("--skip-checks", "Skip system checks.")]:
        parser.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=text)
    for flag, text in [("--settings", "A settings module."), ("--pythonpath", "A directory to add to sys.path.")]:
        parser.add_argument(flag, default=argparse.SUPPRESS, help=text)  # read by manage.py itself


def _concurrency(action: str, value: Any) -> int | None:
    """``--concurrency`` as given; ``call_command(concurrency=...)`` skips argparse, so again here."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{action}: --concurrency must be a whole number from 1 up, not {value!r}")
    return value

"""How ``manage.py verification_link`` talks to cron: a usage error is one line and exit status 2,
and a sweep reports its batches at the verbosity asked for (``Progress``)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any, NoReturn

from django.core.management.base import CommandError, CommandParser, OutputWrapper

from ..services.sweeps import SweepBatch, SweepResult

#: Exit status of a usage error (argparse's own, and what cron scripts expect).
USAGE = 2
#: Exit status when a sweep went through but some sessions failed.
FAILURES = 1


class UsageError(CommandError):
    """A bad argument or setting: one line, exit status 2."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message), returncode=USAGE)


def one_line(text: object) -> str:
    return " ".join(str(text).split())


class OneLineParser(CommandParser):
    """argparse's errors as a ``UsageError``, from the command line as from ``call_command``:
    argparse would print the whole usage first (several lines), and Django's ``call_command``
    would raise a ``CommandError`` with exit status 1."""

    def error(self, message: str) -> NoReturn:
        # self.prog is "manage.py verification_link poll" (or " verification_link poll" in
        # call_command): the sub-command's words, not the script's, start the line.
        words = self.prog.split()
        raise UsageError(f"{' '.join(words[1:] or words)}: {message}")


def positive_whole(text: str) -> int:
    """argparse ``type`` of ``--concurrency``: a whole number from 1 up (0 would run nothing)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 up, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 up, not {value}")
    return value


class Progress:
    """A sweep's ``on_batch``: prints what the verbosity asks for, from the batch itself (no query).

    - 1: a line per batch — the sweep's sessions so far found, processed, failed, and the rate.
    - 2: before it, a line per session: its id and what became of it (never a link or secret).
    - 3: the batch's own time and the time so far on the batch line.

    ``latest`` holds the counts of the last batch reported (all zero before the first).
    """

    def __init__(
        self, name: str, out: OutputWrapper, verbosity: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name, self.out, self.verbosity, self.clock = name, out, verbosity, clock
        self.started = self.last = clock()
        self.batches = 0
        self.latest = SweepResult()

    def __call__(self, batch: SweepBatch) -> None:
        now = self.clock()
        self.batches, self.latest = batch.number, batch.result
        if self.verbosity >= 2:
            for pk, outcome in batch.outcomes:
                self.out.write(f"{self.name}: session {pk}: {outcome}")
        if self.verbosity >= 1:
            result = batch.result
            line = f"{self.name}: batch {batch.number}: {result}, {self.rate(result, now):.1f}/s"
            if self.verbosity >= 3:
                line += f" (batch {len(batch.outcomes)} in {now - self.last:.3f} s, {now - self.started:.3f} s so far)"
            self.out.write(line)
        self.last = now

    def rate(self, result: SweepResult, now: float) -> float:
        """Sessions gone through (processed or failed) a second, since the sweep started."""
        return (result.processed + result.failed) / max(now - self.started, 1e-6)

    def elapsed(self) -> float:
        return self.clock() - self.started

    def timing(self, **details: Any) -> str:
        """The verbosity-3 line after the summary: the sweep's time and what shaped it."""
        parts = [f"{self.elapsed():.3f} s", f"{self.batches} batch{'es' if self.batches != 1 else ''}"]
        parts += [f"{key.replace('_', ' ')} {value}" for key, value in details.items() if value is not None]
        return f"{self.name}: " + ", ".join(parts)

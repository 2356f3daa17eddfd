"""The parts of ``benchmarks/load.py``, one concern a module, and the little they all share: where the
repository and the example project are, putting the example project on ``sys.path``, the log line.

- ``processes``: what a load runs against — the fake provider's child process, the PostgreSQL
  database (or a throwaway cluster), the gunicorn servers and their logs;
- ``cpu``: CPU time of process trees and of the whole machine, from ``/proc``;
- ``clients``: the sessions a load targets, its requests, the client threads that send them;
- ``verdicts``: the invariants checked, PASS or FAIL;
- ``valid``, ``valid_checks``, ``valid_report``: the all-valid figure — its sessions, requests and
  interleaved rounds; its invariants; its table (and ``--profile``'s);
- ``mixed``, ``mixed_checks``: the mixed load — its sessions, their truth, its requests and table;
  its invariants.

What the figures measure and check is told to the user in ``benchmarks/load.py``'s docstring. Imported
as ``loadtest``: ``python benchmarks/load.py`` puts ``benchmarks/`` on ``sys.path``, as for ``_harness``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE = ROOT / "example_project"


def log(message: str) -> None:
    """A progress line, time-stamped, flushed at once (the servers' logs go to files)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def use_example_project() -> None:
    """The example project's settings, importable here and in the fake provider's child process."""
    for path in (str(EXAMPLE), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.environ["DJANGO_SETTINGS_MODULE"] = "example_project.settings"

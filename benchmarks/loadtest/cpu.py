"""CPU time from ``/proc`` (Linux): of a process tree, its live processes and the reaped ones, and of the
whole machine; ``CpuProbe`` reads them at both ends of a window of load."""

from __future__ import annotations

import collections
import os
from pathlib import Path

# /proc counts CPU time in clock ticks (USER_HZ, 100 on Linux).
CLOCK_TICK_MS = 1000 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 10.0


def _process_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, own ticks: utime + stime, reaped children's ticks: cutime + cstime)."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": fields[0] is the state
        ppid, utime, stime, cutime, cstime = (int(fields[i]) for i in (1, 11, 12, 13, 14))
        table[int(entry.name)] = (ppid, utime + stime, cutime + cstime)
    return table


def tree_cpu_ms(roots: dict[str, int | None]) -> dict:
    """CPU ms ever spent by each root's process tree: every live process under it (``utime +
    stime``, a zombie's too) plus what each reaped (``cutime + cstime``: the kernel adds a child's
    whole time, its reaped descendants' included, to its parent when the parent waits for it). The
    difference of two readings is the tree's CPU between them, whatever processes came and went
    (missed only: a child that exited but has not been waited for, for the instant it takes).
    None for a root that is not a process of this machine."""
    table = _process_table()
    children: dict[int, list[int]] = collections.defaultdict(list)
    for pid, (ppid, _, _) in table.items():
        children[ppid].append(pid)
    out: dict[str, float | None] = {}
    for name, root in roots.items():
        if root is None or root not in table:
            out[name] = None
            continue
        ticks, stack = 0, [root]
        while stack:
            pid = stack.pop()
            ticks += table[pid][1] + table[pid][2]
            stack.extend(children.get(pid, ()))
        out[name] = ticks * CLOCK_TICK_MS
    return out


def machine_busy_ms() -> float:
    """All CPUs' busy time (``/proc/stat``: everything but idle and iowait), ms."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) * CLOCK_TICK_MS


def postmaster_pid() -> int | None:
    """The PostgreSQL server's root process: the parent of our connection's backend, when it runs on
    this machine (a unix socket, or TCP to localhost in the same pid namespace)."""
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
        parent = _process_table().get(backend, (None,))[0]
        if parent is None or "postgres" not in Path(f"/proc/{parent}/cmdline").read_bytes().decode(errors="replace"):
            return None
        return parent
    except Exception:
        return None


class CpuProbe:
    """Readings of the CPU time of a server, the database cluster, this process (the clients), the fake
    provider and the whole machine; ``since(reading)``: what each spent from then to now."""

    def __init__(self, postmaster: int | None, provider_pid: int | None) -> None:
        self.postmaster, self.provider_pid = postmaster, provider_pid

    def read(self, server_pid: int) -> dict[str, float | None]:
        roots = {"server": server_pid, "db": self.postmaster, "provider": self.provider_pid}
        try:
            reading = tree_cpu_ms(roots)
            reading["machine"] = machine_busy_ms()
        except OSError:  # no /proc: the figures stay blank
            reading = dict.fromkeys([*roots, "machine"])
        times = os.times()
        reading["clients"] = (times.user + times.system) * 1000
        return reading

    def since(self, before: dict[str, float | None], server_pid: int) -> dict[str, float | None]:
        after = self.read(server_pid)
        return {k: None if before[k] is None or after[k] is None else after[k] - before[k] for k in after}

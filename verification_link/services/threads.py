"""The sweeps' threads: a pool that outlives a batch (so the next batch's provider calls overlap
the current batch's writes), and how those threads share the provider and the database."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from django.db import connection, connections


def _guarded(work: Callable[[Any], Any], item: Any) -> Any:
    try:
        return work(item)
    except BaseException as exc:  # the caller decides what an error means; a waiting batch never hangs
        return exc


class Batch:
    """The outcomes of one ``SweepPool.submit``: ``wait()`` returns them (results or exceptions)
    once every item's work has run, in no particular order."""

    def __init__(self, size: int) -> None:
        self._outcomes: list[Any] = []
        self._remaining = size
        self._lock = threading.Lock()
        self._done = threading.Event()
        if size == 0:
            self._done.set()

    def _add(self, outcome: Any) -> None:
        with self._lock:
            self._outcomes.append(outcome)
            self._remaining -= 1
            if self._remaining == 0:
                self._done.set()

    def wait(self) -> list[Any]:
        self._done.wait()
        return self._outcomes


_STOP = object()


class SweepPool:
    """Up to ``threads`` worker threads for the whole of one sweep, started as work arrives.

    ``submit(items, work)`` queues ``work(item)`` for every item and returns at once with a
    ``Batch`` to wait on: a sweep submits its next batch, then writes the current one while the
    pool works. Threads, and their database connections, are made once per sweep rather than once
    per batch; each thread closes its own connections when the pool closes (``with`` block).

    Inside a transaction, or with ``threads`` 1, the work runs in the calling thread at
    ``submit``: other threads have their own database connections and could not see uncommitted
    rows. Work that writes to the database from threads must take a ``_SweepTurns`` database turn
    (the sweeps do): SQLite takes one writer at a time.
    """

    def __init__(self, threads: int) -> None:
        self.inline = threads <= 1 or connection.in_atomic_block
        self._size = threads
        self._tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, items: Iterable[Any], work: Callable[[Any], Any]) -> Batch:
        """Queue ``work(item)`` for every item; the ``Batch`` returned at once gives, on ``wait()``,
        each item's result or the exception it raised, in no particular order."""
        items = list(items)
        batch = Batch(len(items))
        if self.inline:
            for item in items:
                batch._add(_guarded(work, item))
            return batch
        while len(self._threads) < min(self._size, len(items)):
            thread = threading.Thread(target=self._work, name=f"vl-sweep-{len(self._threads)}", daemon=True)
            thread.start()
            self._threads.append(thread)
        for item in items:
            self._tasks.put((batch, work, item))
        return batch

    def _work(self) -> None:
        try:
            while (task := self._tasks.get()) is not _STOP:
                batch, work, item = task
                batch._add(_guarded(work, item))
        finally:
            connections.close_all()  # this thread's connections, not the caller's

    def close(self) -> None:
        """Stop the threads once the work queued so far is done, and wait for them."""
        for _ in self._threads:
            self._tasks.put(_STOP)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def __enter__(self) -> SweepPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def run_concurrently(ids: Iterable[Any], work: Callable[[Any], Any], *, concurrency: int) -> list[Any]:
    """Run ``work(id)`` for every id on at most ``concurrency`` threads; return the results (or the
    exceptions) in no particular order. ``SweepPool`` for one batch: inside a transaction, or with
    ``concurrency`` 1, everything runs in the calling thread."""
    ids = list(ids)
    with SweepPool(concurrency if len(ids) > 1 else 1) as pool:
        return pool.submit(ids, work).wait()


#: The database turn of sweep threads where the database takes one writer at a time: shared by
#: every sweep of the process (a worker may run a poll and an expiry sweep at once). Re-entrant so
#: that work run inline in a thread already holding it cannot deadlock on itself.
_single_writer = threading.RLock()


class _SweepTurns:
    """How the threads of one sweep share the provider and the database.

    ``database`` (a context manager) is held for the whole of one session's work. Where the database
    has row locks (``has_select_for_update``: PostgreSQL, MySQL) it is free and threads write
    concurrently, each transaction holding its rows. Where it has not (SQLite: one write lock per
    database file) it is one lock for every sweep thread of the process: concurrent writers there
    fail with "database is locked" (a deferred transaction that read first cannot wait for the
    lock) or queue in SQLite's sleeping busy handler.

    ``provider_call`` is ``_refresh``'s ``provider_slot``: at most ``concurrency`` provider calls in
    flight, and the database turn given up while a thread waits for a slot and for the answer, so
    the provider calls — the slow part — still overlap.
    """

    def __init__(self, concurrency: int) -> None:
        writer = None if connection.features.has_select_for_update else _single_writer
        self.database: AbstractContextManager[Any] = writer if writer is not None else nullcontext()
        self.provider_call = _ProviderCall(threading.BoundedSemaphore(concurrency), writer)


class _ProviderCall:
    """A provider slot taken, with the database turn (if any) given up, for the duration of a
    provider call: entered only by a thread holding that turn. Reusable and thread-safe."""

    def __init__(self, slots: threading.BoundedSemaphore, writer: threading.RLock | None) -> None:
        self.slots = slots
        self.writer = writer

    def __enter__(self) -> None:
        if self.writer is not None:
            self.writer.release()
        try:
            self.slots.acquire()
        except BaseException:
            if self.writer is not None:
                self.writer.acquire()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.slots.release()  # before waiting for the database: never hold both while waiting
        if self.writer is not None:
            self.writer.acquire()


def _sweep_threads(concurrency: int) -> int:
    # ``concurrency`` provider calls in flight at all times, plus threads that apply answers to the
    # database meanwhile: the provider is the scarce resource, keep it busy.
    return concurrency + max(1, concurrency // 2)

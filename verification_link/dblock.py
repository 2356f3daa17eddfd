"""Taking the database's write lock at the start of a transaction, where the database has no row locks.

In SQLite's default (deferred) transactions a read takes a shared lock and the first write must
upgrade it; while another connection is writing, SQLite refuses that upgrade at once — "database is
locked", no busy timeout — because waiting could deadlock. A write as the first statement instead
waits its turn (the busy timeout) like any autocommit write. Databases with row locks (PostgreSQL,
MySQL) serialise writers with ``SELECT … FOR UPDATE`` and skip it: the decision is a database
*feature*, the same one Django's ``select_for_update`` consults.
"""

from __future__ import annotations

from django.db import connection
from django.db.models import F, Model


def take_write_lock(model: type[Model]) -> None:
    """Call first thing in every transaction that reads, then writes. The write is an ``UPDATE`` of
    ``model``'s table that matches no row: nothing changes, no signal fires. Outside a transaction,
    or on a database with row locks, it does nothing."""
    if connection.features.has_select_for_update or not connection.in_atomic_block:
        return
    pk = model._meta.pk.attname
    model._default_manager.filter(pk=None).update(**{pk: F(pk)})

"""The outbox's hot statements, prepared once per connection."""

from __future__ import annotations

import psycopg
from django.db import connection

# Django opens its connections with `prepare_threshold=None`, under which psycopg ignores
# `prepare=True` too (every call was planned again: a third of a batch's PostgreSQL time).
# A threshold no statement reaches turns explicit preparation on and leaves Django's own
# queries unprepared, as before.
_ONLY_WHEN_ASKED = 2**31 - 1


def prepared_cursor() -> psycopg.Cursor:
    """A server-side-binding cursor on Django's connection (and its transaction), for the
    statements the outbox runs hundreds of times a second: `execute(..., prepare=True)` parses
    and plans them once per connection (PgBouncer runs in session mode here,
    docs/operations.md). Django's cursors bind on the client and plan every call."""
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        raw.prepare_threshold = _ONLY_WHEN_ASKED
    return psycopg.Cursor(raw)

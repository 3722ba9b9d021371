"""The outbox's hot statements, prepared once per connection."""

from __future__ import annotations

import psycopg
from django.db import connection


def prepared_cursor() -> psycopg.Cursor:
    """A server-side-binding cursor on Django's connection (and its transaction), for the
    statements the outbox runs hundreds of times a second: `execute(..., prepare=True)` parses
    and plans them once per connection (PgBouncer runs in session mode here,
    docs/operations.md). Django's cursors bind on the client and plan every call."""
    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)

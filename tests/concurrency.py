"""Helpers for tests that run work on threads at once against the real database."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connection


def in_thread(target: Callable[[], object], errors: list[BaseException]) -> threading.Thread:
    """`target` started on a thread of its own (with its own database connection, closed at
    the end); whatever it raises is appended to `errors` for the test to assert on."""

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def waiting_for_locks() -> int:
    """Sessions of the test database waiting for a lock now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])

"""Which SQL the database gets: PostgreSQL's fast paths, or the portable ones SQLite runs.

Every module with a PostgreSQL-only fast path asks here, so one setting
(`FORCE_PORTABLE_SQL`) makes the tests run the portable paths against PostgreSQL too: both
paths are tested on the database the suite runs on.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection


def postgres_fast_paths() -> bool:
    """True on PostgreSQL unless settings.FORCE_PORTABLE_SQL asks for the portable SQL."""
    return connection.vendor == "postgresql" and not getattr(settings, "FORCE_PORTABLE_SQL", False)

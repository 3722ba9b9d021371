"""Which SQL the database gets: PostgreSQL's fast paths, or the portable ones SQLite runs.

Every module with a PostgreSQL-only fast path asks here, so one setting
(`FORCE_PORTABLE_SQL`) makes the tests run the portable paths against PostgreSQL too: both
paths are tested on the database the suite runs on.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models.lookups import In


def postgres_fast_paths() -> bool:
    """True on PostgreSQL unless settings.FORCE_PORTABLE_SQL asks for the portable SQL."""
    return connection.vendor == "postgresql" and not getattr(settings, "FORCE_PORTABLE_SQL", False)


class AnyOf(In):
    """`field__in=values` written `field = ANY(%s)` on PostgreSQL: one array parameter
    instead of one placeholder per value. The claim's policy queries ask about every row of
    a batch (1,000+ numbers or ids); Django builds, and psycopg splits in Python, a query text
    with one placeholder each, ~5 µs a value while the sender's pacer waits for the GIL.
    Elsewhere the plain IN. Used as `.filter(AnyOf(F("phone"), phones))`."""

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        if not postgres_fast_paths() or not self.rhs_is_direct_value():
            return super().as_sql(compiler, connection)
        lhs, lhs_params = self.process_lhs(compiler, connection)
        field = self.lhs.output_field
        values = [
            field.get_db_prep_value(v, connection, prepared=True)
            for v in dict.fromkeys(self.rhs)
            if v is not None  # as IN: NULL is never equal to anything
        ]
        return f"{lhs} = ANY(%s::{field.cast_db_type(connection)}[])", (*lhs_params, values)

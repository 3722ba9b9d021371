"""A JSONField stored as PostgreSQL `json` (the text, checked on the way in) instead of `jsonb`.

For the queue's `parameters`: written by the million (a CSV import COPYs one per row) and only
ever read back whole, never searched inside. jsonb parses each value into its binary form and
stores more bytes than the text; for the 1,000,000-row import that was about 1 s of
PostgreSQL's CPU and 7 % of the import's time (docs/benchmarks.md, "Ratio to a raw COPY").

Two differences the field hides: psycopg parses `json` results itself (Django has `jsonb`
loaded as text for JSONField to parse), and `json` has no equality operator, so `exact`
compares the value as jsonb. Other databases keep JSONField's own type.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.fields.json import JSONExact


class JsonTextField(models.JSONField):
    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "postgresql":
            return "json"
        return super().db_type(connection)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is not None and not isinstance(value, str):
            return value  # already parsed by psycopg's json loader
        return super().from_db_value(value, expression, connection)


@JsonTextField.register_lookup
class JsonTextExact(JSONExact):
    """`parameters=[]`: json = jsonb has no operator, jsonb = jsonb has."""

    def process_lhs(self, compiler: Any, connection: Any, lhs: Any = None) -> Any:
        sql, params = super().process_lhs(compiler, connection, lhs)
        if connection.vendor == "postgresql":
            sql = f"({sql})::jsonb"
        return sql, params

"""A CSV chunk's contacts written by the PostgreSQL import, and the id of each.

A chunk's numbers are COPYed straight into the contact table as new contacts, with ids
drawn from its sequence: a plain COPY costs about half the server's CPU of the
`INSERT … ON CONFLICT` upsert from a batch table (docs/benchmarks.md), and every number of
a first import is new. When one of them already has a contact (a file imported before, or a
contact created meanwhile by another transaction), the COPY fails on `contact_phone_unique`
inside a savepoint, and that chunk and the rest of the file go through the upsert, which
merges the attributes and locks the contacts as it always did. Either way the contacts and
ids come out the same (tests/campaigns/test_import_contacts.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.db import IntegrityError, connection, transaction

from campaigns.csv_import.chunks import Rendered, joined_columns
from campaigns.models import Contact

# The columns of a chunk's contact lines (`chunks.CONTACT_LINE_FIELDS`) in the batch table,
# and in the contact table after the constants each new contact's line gets in front.
BATCH_CONTACT_COLUMNS = "phone, name, vals"
_NEW_CONTACT_COLUMNS = "id, wa_id, created_at, phone, name, attributes"
_T = TypeVar("_T")


class ContactWriter:
    """Writes the contacts of one import's chunks, in one transaction, at time `now`."""

    def __init__(self, cursor: Any, batch: str, now: Any) -> None:
        self._cursor, self._batch, self._now = cursor, batch, now
        self._copying = True  # until a chunk holds a number that has a contact
        self._sequence: str | None = None

    def write(self, rendered: Rendered, then: Callable[[list[str]], _T]) -> _T:
        """The contacts of a chunk's kept rows written; returns `then` of their contact ids
        (as text, in the rows' order), which runs (when it can) while PostgreSQL takes the
        contacts in: the caller's next COPY text is built meanwhile instead of after."""
        if self._copying:
            try:
                with transaction.atomic(), connection.wrap_database_errors:
                    return self._copy_new(rendered, then)
            except IntegrityError:
                self._copying = False  # numbers known here: the rest of the file is upserted
        cursor, batch = self._cursor, self._batch
        cursor.execute(f"TRUNCATE {batch}")
        with cursor.cursor.copy(f"COPY {batch} ({BATCH_CONTACT_COLUMNS}) FROM STDIN") as copy:
            copy.write("".join(rendered.contacts).encode())
        found = upsert_contacts(cursor, batch, len(rendered.phones), self._now)
        return then([str(found[phone]) for phone in rendered.phones])

    def _copy_new(self, rendered: Rendered, then: Callable[[list[str]], _T]) -> _T:
        """The chunk's rows COPYed in as new contacts, sorted by phone (so the phone index
        takes them in one sweep, and two imports sharing numbers wait for each other in the
        same order), their ids drawn in the rows' order: the queue's (campaign, contact)
        entries then append, which saves more than the primary key's entries (within the
        chunk's range) lose (docs/benchmarks.md)."""
        cursor = self._cursor
        table = Contact._meta.db_table
        if self._sequence is None:
            cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
            self._sequence = cursor.fetchone()[0]
        order, lines = rendered.order, rendered.contacts
        # The sequence as a constant: nextval over a regclass from a subquery looks the
        # sequence up again for every id (7 x the CPU).
        cursor.execute(
            "SELECT string_agg(nextval(%s::regclass)::text, ',') FROM generate_series(1, %s)",
            [self._sequence, len(order)],
        )
        drawn: list[str] = cursor.fetchone()[0].split(",")
        # id, wa_id (none), created_at, then the contact's line.
        between = [f"\t\t{self._now.isoformat()}\t"] * len(order)
        text = joined_columns([drawn[i] for i in order], between, lines)
        with cursor.cursor.copy(f"COPY {table} ({_NEW_CONTACT_COLUMNS}) FROM STDIN") as copy:
            copy.write(text.encode())
            # Before the COPY's end is waited for: the server is busy with the rows.
            return then(drawn)


def upsert_contacts(cursor: Any, batch: str, rows: int, now: Any) -> dict[str, int]:
    """The batch's `rows` contacts upserted (sorted by phone, so two imports sharing
    numbers lock them in the same order); returns each number's contact id (the rows the
    upsert inserted or changed come back with it, the others are read)."""
    contact = Contact._meta.db_table
    cursor.execute(
        f"INSERT INTO {contact} AS c (phone, name, attributes, wa_id, created_at) "  # noqa: S608
        f"SELECT phone, coalesce(name, ''), vals - 'name', '', %s FROM {batch} "
        "ORDER BY phone ON CONFLICT (phone) DO UPDATE SET "
        "name = CASE WHEN EXCLUDED.name <> '' THEN EXCLUDED.name ELSE c.name END, "
        "attributes = c.attributes || EXCLUDED.attributes "
        "WHERE (EXCLUDED.name <> '' AND EXCLUDED.name <> c.name) "
        "OR NOT c.attributes @> EXCLUDED.attributes RETURNING c.phone, c.id",
        [now],
    )
    ids = dict(cursor.fetchall())
    if len(ids) == rows:
        # Every number came back (all inserted or changed): none left to read.
        return ids
    cursor.execute(
        f"SELECT c.phone, c.id FROM {contact} c WHERE c.phone = ANY("  # noqa: S608
        f'ARRAY(SELECT b.phone COLLATE "default" FROM {batch} b)) '
        "AND NOT c.phone = ANY(string_to_array(%s, ','))",
        [",".join(ids)],
    )
    ids.update(cursor.fetchall())
    return ids

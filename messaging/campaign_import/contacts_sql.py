"""A CSV chunk's contacts written by the PostgreSQL import, and the id of each.

Numbers with no contact when the chunk was looked up (every number of a first import) are
COPYed straight into the contact table with ids drawn from its sequence: a plain COPY is
about half the server's CPU of the `INSERT … ON CONFLICT` upsert from a batch table
(docs/benchmarks.md). Numbers that have a contact go through that upsert, which merges the
attributes and locks the row as before. If a number's contact was created meanwhile by
another transaction, the COPY fails on `contact_phone_unique` and the chunk's new numbers go
through the upsert instead, so the result is the same either way.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, connection, transaction

from campaigns.csv_import.chunks import Rendered
from campaigns.models import Contact

# The columns of a chunk's contact lines (`chunks.CONTACT_LINE_FIELDS`) in the batch table,
# and in the contact table after the constants each new contact's line gets in front.
BATCH_CONTACT_COLUMNS = "phone, name, vals"
_NEW_CONTACT_COLUMNS = "id, wa_id, created_at, phone, name, attributes"


def write_contacts(
    cursor: Any, batch: str, rendered: Rendered, known: dict[str, int], now: Any
) -> dict[str, int]:
    """The contacts of a chunk's kept rows written; returns each number's contact id.
    `known` holds the numbers that had a contact when the chunk was looked up."""
    phones, lines = rendered.phones, rendered.contacts
    new = [i for i, phone in enumerate(phones) if phone not in known]
    upserted = [i for i, phone in enumerate(phones) if phone in known] if known else []
    ids: dict[str, int] = {}
    if new:
        try:
            with transaction.atomic(), connection.wrap_database_errors:
                ids = _copy_new(cursor, phones, lines, new, now)
        except IntegrityError:
            # A number of `new` got a contact since the look-up: upsert them all.
            ids, upserted = {}, list(range(len(phones)))
    if upserted:
        cursor.execute(f"TRUNCATE {batch}")
        with cursor.cursor.copy(f"COPY {batch} ({BATCH_CONTACT_COLUMNS}) FROM STDIN") as copy:
            copy.write("".join([lines[i] for i in upserted]).encode())
        ids.update(upsert_contacts(cursor, batch, len(upserted), now))
    return ids


def _copy_new(
    cursor: Any, phones: list[str], lines: list[str], new: list[int], now: Any
) -> dict[str, int]:
    """The rows at positions `new` COPYed in as new contacts, sorted by phone (so the phone
    index takes them in one sweep, and two imports sharing numbers wait for each other in
    the same order), their ids drawn in that order (so the primary key appends)."""
    table = Contact._meta.db_table
    order = sorted(new, key=phones.__getitem__)
    cursor.execute(
        "SELECT string_agg(nextval(s.seq)::text, ',') FROM "
        "(SELECT pg_get_serial_sequence(%s, 'id')::regclass AS seq) s, generate_series(1, %s)",
        [table, len(order)],
    )
    drawn = [int(i) for i in cursor.fetchone()[0].split(",")]
    created = now.isoformat()
    text = "".join(
        [
            f"{contact_id}\t\t{created}\t{lines[i]}"
            for contact_id, i in zip(drawn, order, strict=True)
        ]
    )
    with cursor.cursor.copy(f"COPY {table} ({_NEW_CONTACT_COLUMNS}) FROM STDIN") as copy:
        copy.write(text.encode())
    return {phones[i]: contact_id for contact_id, i in zip(drawn, order, strict=True)}


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

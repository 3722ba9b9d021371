"""Checked rows cut into chunks for the PostgreSQL import, and a chunk as COPY text.

No Django and no database here: the import's parse process (`parse_worker`) runs this on
its own core, and the import's threads run the same functions when the file is small, so
both ways give the same rows in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from campaigns.csv_import.reader import NAME_HEADER
from campaigns.csv_import.rendering import TemplatePlan, json_string, plan_json
from campaigns.csv_import.rows import CsvRow

# (row number, E.164, name, values) of a row whose number is kept.
KeptRow = tuple[int, str, str, dict[str, str]]
# (row number, value, reason) of a refused row.
RejectedRow = tuple[int, str, str]

# The fields of each text below, in the order its lines hold them (COPY's column lists).
CONTACT_LINE_FIELDS = "phone, name, attributes"
REJECTION_COLUMNS = "campaign_id, row_number, value, reason"
QUEUE_LINE_COLUMNS = "template_id, phone, parameters"  # after the line's prefix

_BACKSLASH = "\\"
# COPY's text format: backslash, tab, newline and carriage return escaped (NUL cannot be in a
# checked row).
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


@dataclass
class Chunk:
    """A run of consecutive rows: the first rows of their numbers, the refused rows, and how
    many repeated an earlier row's number."""

    kept: list[KeptRow] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    duplicates: int = 0


def chunked(rows: Iterable[CsvRow], size: int) -> Iterator[Chunk]:
    """`rows` in chunks of `size` rows (the last may be shorter), the first ones smaller
    (size / 8, then twice as many each time), so PostgreSQL gets its first rows soon instead
    of waiting for a whole chunk to be parsed and rendered. The first row of a number wins;
    a set of ints (about 60 MB per million numbers) is far cheaper than asking PostgreSQL per
    chunk."""
    seen: set[int] = set()
    chunk = Chunk()
    count = 0
    limit = max(1, size // 8)
    for row in rows:
        count += 1
        if row.phone is None:
            chunk.rejected.append((row.row_number, row.raw_phone, row.reason))
        else:
            key = int(row.phone[1:])
            if key in seen:
                chunk.duplicates += 1
            else:
                seen.add(key)
                chunk.kept.append((row.row_number, row.phone, row.name, row.values))
        if count >= limit:
            yield chunk
            chunk, count, limit = Chunk(), 0, min(size, limit * 2)
    if count:
        yield chunk


def drop_mask(size: int, positions: Iterable[int]) -> bytes:
    """A bit per row of a chunk's kept rows, set at `positions` (the rows left out): at most
    size / 8 bytes, however many rows are left out."""
    mask = bytearray((size + 7) // 8)
    for position in positions:
        mask[position >> 3] |= 1 << (position & 7)
    return bytes(mask)


def without_dropped(rows: Sequence[KeptRow], mask: bytes) -> list[KeptRow]:
    """`rows` but those whose bit is set in `mask` (see drop_mask)."""
    if not any(mask):
        return list(rows)
    return [row for i, row in enumerate(rows) if not mask[i >> 3] & (1 << (i & 7))]


@dataclass
class Rendered:
    """A chunk's rows ready to COPY: each kept row's number and its queue line but for the
    contact id (known once the contacts are looked up or in), the contacts' lines in phone
    order (`contacts[k]` is the line of row `order[k]`), and the refused rows'
    ImportRejection text."""

    phones: list[str]
    contacts: list[str]
    order: list[int]
    lines: list[str]
    rejections: bytes

    def clear(self) -> None:
        self.phones, self.contacts, self.order, self.lines = [], [], [], []
        self.rejections = b""


def joined_columns(*columns: Sequence[str]) -> str:
    """Rows of text put together from their columns (equally long): row 0's pieces in
    order, then row 1's, ... in one join, without building a string for each row: about a
    tenth of the CPU of the same rows made with `+` or an f-string, on the thread that keeps
    PostgreSQL waiting meanwhile (docs/benchmarks.md)."""
    width = len(columns)
    parts = [""] * (width * len(columns[0]))
    for position, column in enumerate(columns):
        parts[position::width] = column
    return "".join(parts)


def _json_object(values: dict[str, str]) -> str:
    """json.dumps(values, ensure_ascii=False, separators=(",", ":")) of a dict of strings,
    without the encoder's set-up for every row."""
    return "{" + ",".join([json_string(k) + ":" + json_string(v) for k, v in values.items()]) + "}"


def render_chunk(
    plans: Sequence[TemplatePlan],
    pattern: Sequence[int],
    campaign_id: int,
    kept: Sequence[KeptRow],
    seq: int,
    rejected: Sequence[RejectedRow],
    line_prefix: str = "",
) -> Rendered:
    """A chunk's kept rows, which start at queue position `seq`, as COPY text: each row's
    contact (number, name, the other values as attributes), its queue line but for the
    contact id (its template by the interleave `pattern` of template ids, its rendered
    parameters) after `line_prefix` (the columns every row of the import shares), and the
    chunk's `rejected` rows."""
    renderers = {p.template_id: plan_json(p) for p in plans}
    period = len(pattern)
    contacts: list[str] = []
    phones: list[str] = []
    lines: list[str] = []
    for offset, (_row_number, phone, name, values) in enumerate(kept):
        template_id = pattern[(seq + offset) % period]
        # JSON text holds no raw tab or newline; its backslashes are COPY's escape. An
        # E.164 number needs no escaping, a name may.
        parameters = renderers[template_id](values).replace(_BACKSLASH, _BACKSLASH * 2)
        # The name is the contact's own column, not an attribute. (The row's values are
        # this chunk's own and read no more.)
        values.pop(NAME_HEADER, None)
        contacts.append(
            f"{phone}\t{name.translate(_COPY_ESCAPES)}\t"
            f"{_json_object(values).replace(_BACKSLASH, _BACKSLASH * 2)}\n"
        )
        phones.append(phone)
        lines.append(f"{line_prefix}{template_id}\t{phone}\t{parameters}\n")
    rejections = "".join(
        [
            f"{campaign_id}\t{row_number}\t{value.translate(_COPY_ESCAPES)}\t"
            f"{reason.translate(_COPY_ESCAPES)}\n"
            for row_number, value, reason in rejected
        ]
    )
    # Sorted here, on the parse process's core, not by the thread that feeds PostgreSQL,
    # which would keep the server waiting (contacts go in in phone order: contacts_sql).
    order = sorted(range(len(phones)), key=phones.__getitem__)
    return Rendered(phones, [contacts[i] for i in order], order, lines, rejections.encode())

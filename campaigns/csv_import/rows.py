"""A campaign CSV's data rows, streamed: phone normalised, needed columns checked."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from campaigns.csv_import.phones import recipient_phone
from campaigns.csv_import.reader import NAME_HEADER, CsvFile
from campaigns.csv_import.rendering import value_problem


@dataclass(slots=True)
class CsvRow:
    """One data row: `phone` is E.164 when the row is usable, else `reason` says why not."""

    row_number: int
    phone: str | None
    name: str
    values: dict[str, str]  # non-empty non-phone cells (name included), in file order
    raw_phone: str
    reason: str = ""

    @property
    def e164(self) -> str:
        """The number of a usable row (the importers only queue those)."""
        if self.phone is None:
            raise ValueError(f"row {self.row_number} has no usable phone: {self.reason}")
        return self.phone


_Payload = TypeVar("_Payload")
# Rows handed to `PhoneBlocks.normalise` at a time.
PHONE_BLOCK_ROWS = 5_000


class PhoneBlocks(Protocol):
    """Normalises blocks of numbers elsewhere (other processes), in order: for each
    (payload, stripped raw numbers) it yields (payload, `recipient_phone` of each number)."""

    def normalise(
        self, blocks: Iterable[tuple[_Payload, list[str]]], region: str
    ) -> Iterator[tuple[_Payload, list[tuple[str | None, str]]]]: ...


def parse_rows(
    csv_file: CsvFile,
    *,
    region: str,
    needed: dict[str, str] | None = None,
    phone_rule: Callable[[str], str] | None = None,
    phones: PhoneBlocks | None = None,
) -> Iterator[CsvRow]:
    """Every data row of `csv_file`, normalised and checked, streaming. `phone_rule` (the
    send policy's, e.g. no marketing to US numbers) gives a reason to refuse a valid number.
    With `phones`, the numbers are normalised there, a block at a time (the same function,
    so the same rows come out)."""
    layout = csv_file.layout
    phone_index = layout.phone_index
    value_columns = layout.value_columns
    needed = needed or {}
    if phones is not None:
        yield from _parse_in_blocks(csv_file, phones, region, needed, phone_rule)
        return
    for row_number, fields in csv_file.records():
        yield check_row(
            row_number,
            fields[phone_index],
            _values(fields, value_columns),
            region=region,
            needed=needed,
            phone_rule=phone_rule,
        )


def _values(fields: list[str], value_columns: Sequence[tuple[int, str]]) -> dict[str, str]:
    """The row's non-empty cells by column name (stripped), phone column excluded."""
    values = {}
    for index, column in value_columns:
        value = fields[index].strip()
        if value:
            values[column] = value
    return values


def _parse_in_blocks(
    csv_file: CsvFile,
    phones: PhoneBlocks,
    region: str,
    needed: dict[str, str],
    phone_rule: Callable[[str], str] | None,
) -> Iterator[CsvRow]:
    phone_index = csv_file.layout.phone_index
    value_columns = csv_file.layout.value_columns

    def blocks() -> Iterator[tuple[list[tuple[int, list[str]]], list[str]]]:
        block: list[tuple[int, list[str]]] = []
        for record in csv_file.records():
            block.append(record)
            if len(block) >= PHONE_BLOCK_ROWS:
                yield block, [fields[phone_index].strip() for _, fields in block]
                block = []
        if block:
            yield block, [fields[phone_index].strip() for _, fields in block]

    for block, results in phones.normalise(blocks(), region):
        for (row_number, fields), checked in zip(block, results, strict=True):
            yield check_row(
                row_number,
                fields[phone_index],
                _values(fields, value_columns),
                region=region,
                needed=needed,
                phone_rule=phone_rule,
                checked=checked,
            )


def check_row(
    row_number: int,
    raw_phone: str,
    values: dict[str, str],
    *,
    region: str,
    needed: dict[str, str],
    normalised: bool = False,
    phone_rule: Callable[[str], str] | None = None,
    checked: tuple[str | None, str] | None = None,
) -> CsvRow:
    """One audience row checked as a CSV row is: the number normalised to E.164 (unless it
    already is, `normalised`, or `checked` holds `recipient_phone`'s answer for it), refused
    by the send policy's `phone_rule` if it says so (e.g. no marketing to US numbers), and
    every column a template needs filled with a usable value.

    Every audience (a CSV, API rows, contacts chosen in admin) goes through here, so a row is
    accepted or rejected for the same reasons whatever it came from.
    """
    raw = raw_phone.strip()
    name = values.get(NAME_HEADER, "")[:200]
    phone: str | None
    if normalised:
        phone, reason = raw, ""
    elif checked is not None:
        phone, reason = checked
    else:
        phone, reason = recipient_phone(raw, region)
    if phone is not None and phone_rule is not None:
        reason = phone_rule(phone)
        if reason:
            phone = None
    if phone is not None:
        for column, used_by in needed.items():
            problem = value_problem(values.get(column, ""), column)
            if problem:
                reason = f"column {column!r} {problem} (needed by {used_by})"
                phone = None
                break
    return CsvRow(row_number, phone, name, values, raw[:255], reason[:255])

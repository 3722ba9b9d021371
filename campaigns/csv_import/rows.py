"""A campaign CSV's data rows, streamed: phone normalised, needed columns checked."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

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


def parse_rows(
    csv_file: CsvFile,
    *,
    region: str,
    needed: dict[str, str] | None = None,
    phone_rule: Callable[[str], str] | None = None,
) -> Iterator[CsvRow]:
    """Every data row of `csv_file`, normalised and checked, streaming. `phone_rule` (the
    send policy's, e.g. no marketing to US numbers) gives a reason to refuse a valid number."""
    layout = csv_file.layout
    phone_index = layout.phone_index
    value_columns = layout.value_columns
    needed = needed or {}
    for row_number, fields in csv_file.records():
        values = {}
        for index, column in value_columns:
            value = fields[index].strip()
            if value:
                values[column] = value
        yield check_row(
            row_number,
            fields[phone_index],
            values,
            region=region,
            needed=needed,
            phone_rule=phone_rule,
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
) -> CsvRow:
    """One audience row checked as a CSV row is: the number normalised to E.164 (unless it
    already is, `normalised`), refused by the send policy's `phone_rule` if it says so (e.g.
    no marketing to US numbers), and every column a template needs filled with a usable value.

    Every audience (a CSV, API rows, contacts chosen in admin) goes through here, so a row is
    accepted or rejected for the same reasons whatever it came from.
    """
    raw = raw_phone.strip()
    name = values.get(NAME_HEADER, "")[:200]
    phone: str | None
    if normalised:
        phone, reason = raw, ""
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

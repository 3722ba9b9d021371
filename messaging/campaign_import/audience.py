"""Where a campaign's contacts come from: a CSV, rows handed in by code, or contacts selected
in the database (a list, a segment, a cohort of an earlier campaign, an admin selection).

Each audience yields the same `CsvRow`s, checked by the same `check_row`, so the import service
applies one validation, one duplicate rule and one suppression policy whatever the source. A
database audience can also give its SELECT, so on PostgreSQL its rows never leave the
database (see `_PostgresImport.run_selected`); nothing is written to disk either way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet

from campaigns.csv_import import (
    NAME_HEADER,
    PHONE_HEADERS,
    CsvFile,
    CsvImportError,
    CsvRow,
    check_row,
    parse_rows,
)
from campaigns.csv_import.reader import _normalise_header, describe_columns
from messaging.campaign_import.parse_process import check_in_process, file_path
from messaging.campaign_import.phone_pool import PhonePool

# The send policy's refusal of a valid number (messaging.policy.imports.phone_rule).
PhoneRule = Callable[[str], str] | None


class Audience:
    """The rows of a campaign to be; `columns` is known once the audience is entered."""

    empty_message = "the audience is empty"
    columns: tuple[str, ...] = ()

    def __enter__(self) -> Audience:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def rows(
        self, *, region: str, needed: dict[str, str], phone_rule: PhoneRule = None
    ) -> Iterator[CsvRow]:
        raise NotImplementedError

    def selected_sql(self) -> tuple[str, list[Any]] | None:
        """SELECT phone, name, attributes, ordering key of each contact, or None."""
        return None

    def parse_process_path(self) -> str | None:
        """The path of a file big enough for a parse process of its own, or None."""
        return None

    def whole_file_check(self) -> Callable[[], None]:
        """The check of every row that `__enter__` left for the parse process's import to run
        beside it (see CsvAudience), or nothing to do."""
        return lambda: None


class CsvAudience(Audience):
    """An uploaded or stored CSV file, streamed."""

    empty_message = "the file has no data rows, only the header"

    def __init__(self, csv_file: str | Any | IO[bytes]) -> None:
        self._source = csv_file
        self._file: CsvFile | None = None
        self._pool: PhonePool | None = None
        self._path: str | None = None  # for a parse process

    def __enter__(self) -> CsvAudience:
        self._file = CsvFile(self._source)
        try:
            # A broken row near the end is found now, before any database work on the rows
            # above it (docs/benchmarks.md measures the extra read); for a file a parse
            # process will import, beside the import, in a process of its own at a lower
            # priority (`whole_file_check`): a second of CPU a million rows, which the
            # import's idle moments absorb.
            self._path = self._parse_process_path(self._file)
            if self._path is None:
                self._file.check_whole_file()
        except BaseException:
            self._file.close()
            raise
        self.columns = self._file.layout.columns
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._file is not None:
            self._file.close()

    def _parse_process_path(self, csv_file: CsvFile) -> str | None:
        threshold = settings.IMPORT_PARSE_PROCESS_FROM_ROWS
        rows = csv_file.estimated_rows()
        if threshold <= 0 or rows is None or rows < threshold:
            return None
        return file_path(self._source)

    def parse_process_path(self) -> str | None:
        return self._path

    def whole_file_check(self) -> Callable[[], None]:
        assert self._file is not None, "enter the audience first"
        if self._path is None:
            return super().whole_file_check()
        return functools.partial(check_in_process, self._path)

    def rows(
        self, *, region: str, needed: dict[str, str], phone_rule: PhoneRule = None
    ) -> Iterator[CsvRow]:
        assert self._file is not None, "enter the audience first"
        if self._path is not None and self._file.data_rows is None:
            self._file.check_whole_file()  # left for a parse process that is not used (a preview)
        # Big files: numbers normalised in worker processes, on the other core (starting
        # them costs a fraction of a second, so small files stay in this process).
        processes = settings.IMPORT_PHONE_PROCESSES
        rows = self._file.data_rows
        if processes > 0 and rows is not None and rows >= settings.IMPORT_PHONE_PROCESSES_FROM_ROWS:
            self._pool = self._pool or PhonePool(processes)
        return parse_rows(
            self._file, region=region, needed=needed, phone_rule=phone_rule, phones=self._pool
        )


class RowsAudience(Audience):
    """Rows handed in by code (the API, a script): mappings of column name to value, one of
    them a phone column (phone, phone_number, msisdn, mobile or wa_id). Row numbers count
    from 1 in the order given."""

    def __init__(
        self, rows: Iterable[Mapping[str, Any]], *, columns: Sequence[str] | None = None
    ) -> None:
        self._rows = rows
        self._columns = columns

    def __enter__(self) -> RowsAudience:
        if self._columns is None:
            self._rows = list(self._rows)
            seen: dict[str, None] = {}
            for row in self._rows:
                seen.update(dict.fromkeys(row))
            self._columns = list(seen)
        self.columns = tuple(_normalise_header(str(c)) for c in self._columns)
        self._phone = next((h for h in PHONE_HEADERS if h in self.columns), None)
        if self._phone is None:
            raise CsvImportError(
                "no phone column: give each row a 'phone' (or phone_number, msisdn, mobile, "
                f"wa_id); columns given: {describe_columns(self.columns)}"
            )
        return self

    def rows(
        self, *, region: str, needed: dict[str, str], phone_rule: PhoneRule = None
    ) -> Iterator[CsvRow]:
        for row_number, row in enumerate(self._rows, start=1):
            if not isinstance(row, Mapping):
                raise CsvImportError(f"row {row_number}: expected a mapping of column to value")
            values: dict[str, str] = {}
            raw_phone = ""
            for key, value in row.items():
                column = _normalise_header(str(key))
                text = "" if value is None else str(value).strip()
                if column == self._phone:
                    raw_phone = text
                elif text and column:
                    values[column] = text
            yield check_row(
                row_number, raw_phone, values, region=region, needed=needed, phone_rule=phone_rule
            )


class ContactsAudience(Audience):
    """Contacts chosen in the database, in the queryset's order.

    `queryset` is over Contact (`prefix` "") or a model with a contact foreign key (`prefix`
    "contact__", e.g. a cohort's queue rows); `order_by` is the field that orders it. Phones
    are stored in E.164 already; template variables are read from the name and attributes.
    Positional variables follow `columns` (e.g. the earlier campaign's CSV header) where given,
    else the name, then the attributes in alphabetical order.
    """

    def __init__(
        self,
        queryset: QuerySet[Any],
        *,
        prefix: str = "",
        order_by: str = "id",
        description: str = "the selection",
        columns: Sequence[str] | None = None,
    ) -> None:
        self._queryset = queryset.order_by(order_by)
        self._columns = tuple(columns or ())
        self._prefix = prefix
        self._order_by = order_by
        self.empty_message = f"{description} has no contacts"

    def _values(self, *extra: str) -> QuerySet[Any]:
        p = self._prefix
        return self._queryset.values_list(f"{p}phone", f"{p}name", f"{p}attributes", *extra)

    def __enter__(self) -> ContactsAudience:
        if not self._queryset.exists():
            raise CsvImportError(self.empty_message)
        keys = self._attribute_keys() | {NAME_HEADER}
        # Known columns first, in their order (a follow-up keeps its campaign's variables);
        # any other attribute after them, alphabetically.
        known = [c for c in self._columns if c in keys or c in PHONE_HEADERS]
        rest = sorted(keys - set(known) - {NAME_HEADER})
        lead = [] if NAME_HEADER in known else [NAME_HEADER]
        phone = [] if any(c in PHONE_HEADERS for c in known) else ["phone"]
        self.columns = (*phone, *lead, *known, *rest)
        return self

    def _attribute_keys(self) -> set[str]:
        if connection.vendor == "postgresql":
            sql, params = self._values().query.sql_with_params()
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT DISTINCT jsonb_object_keys(s.attributes) "  # noqa: S608
                    f"FROM ({sql}) AS s(phone, name, attributes)",
                    params,
                )
                return {key for (key,) in cursor.fetchall()}
        keys: set[str] = set()
        for attributes in self._queryset.values_list(
            f"{self._prefix}attributes", flat=True
        ).iterator(chunk_size=2000):
            keys.update(attributes or {})
        return keys

    def rows(
        self, *, region: str, needed: dict[str, str], phone_rule: PhoneRule = None
    ) -> Iterator[CsvRow]:
        contacts = self._values().iterator(chunk_size=2000)
        for row_number, (phone, name, attributes) in enumerate(contacts, start=1):
            values = {NAME_HEADER: name} if name else {}
            for key, value in (attributes or {}).items():
                text = "" if value is None else str(value).strip()
                if text and key != NAME_HEADER:
                    values[key] = text
            yield check_row(
                row_number,
                phone,
                values,
                region=region,
                needed=needed,
                normalised=True,
                phone_rule=phone_rule,
            )

    def selected_sql(self) -> tuple[str, list[Any]]:
        sql, params = self._values(self._order_by).query.sql_with_params()
        return sql, list(params)

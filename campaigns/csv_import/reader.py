"""Opening a campaign CSV as a stream: checks, decoding, delimiter, header layout, records."""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from campaigns.csv_import.errors import CsvImportError

# Header names accepted for the phone column, best first.
PHONE_HEADERS = ("phone", "phone_number", "msisdn", "mobile", "wa_id")
NAME_HEADER = "name"
DELIMITERS = (",", ";", "\t")
_SNIFF_BYTES = 64 * 1024
_UNDECODED = re.compile("[\udc80-\udcff]")


@dataclass(frozen=True)
class CsvLayout:
    """What the header says: the delimiter and which column is which (names lower-cased)."""

    delimiter: str
    columns: tuple[str, ...]  # every column, "" for unnamed ones (ignored)
    phone_index: int
    name_index: int | None

    @property
    def value_columns(self) -> list[tuple[int, str]]:
        """(index, name) of every named non-phone column, in file order."""
        return [(i, name) for i, name in enumerate(self.columns) if name and i != self.phone_index]

    @property
    def variable_columns(self) -> list[str]:
        """The columns that feed positional variables when no var<n> column names one."""
        return [
            name for _, name in self.value_columns if not name.startswith(("header_", "button_"))
        ]


def _normalise_header(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().strip("\ufeff").strip().lower())


class _Prefixed(io.RawIOBase):
    """The sniffed head of a stream followed by the rest of it, so nothing is read twice."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        if isinstance(data, str):
            data = data.encode()
        buffer[: len(data)] = data
        return len(data)


class CsvFile:
    """A CSV opened as a stream: call `layout` once, then iterate `records()` once.

    `source` is a path or a binary file object (a Django upload works as is).
    """

    def __init__(self, source: str | Path | IO[bytes]) -> None:
        self._owned: IO[bytes] | None = None
        stream: IO[bytes]
        if isinstance(source, (str, Path)):
            path = Path(source)
            if not path.is_file():
                raise CsvImportError(
                    f"{path}: not a regular file" if path.exists() else f"{path}: no such file"
                )
            self._owned = stream = path.open("rb")
        else:
            stream = source
            if getattr(stream, "seekable", lambda: False)():
                stream.seek(0)
        self._stream = stream
        self.data_rows: int | None = None  # counted by check_whole_file
        try:
            self.layout = self._open(stream)
        except BaseException:
            self.close()
            raise

    def check_whole_file(self) -> None:
        """Read every record once (the C csv parser, no phone or database work) so a broken row
        anywhere is found before the import spends time on the rows above it, then rewind.

        A stream that cannot rewind is left as it is: its rows are checked as they stream.
        """
        if not getattr(self._stream, "seekable", lambda: False)():
            return
        count = 0
        for _ in self.records():
            count += 1
        self._stream.seek(0)
        self.layout = self._open(self._stream)
        self.data_rows = count

    def estimated_rows(self) -> int | None:
        """About how many lines the file has, from its size and its first 64 KB (exact for a
        file that short), without reading it; None when the size is not known."""
        try:
            size = os.fstat(self._stream.fileno()).st_size
        except (AttributeError, OSError, ValueError):
            return None
        lines, length = self._head_lines
        if length >= size or not lines:
            return lines
        return int(size * lines / length)

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def __enter__(self) -> CsvFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self, stream: IO[bytes]) -> CsvLayout:
        head = stream.read(_SNIFF_BYTES)
        if isinstance(head, str):  # a text stream was handed in; encode back, it is cheap
            head = head.encode()
        self._head_lines = (head.count(b"\n"), len(head))
        _check_head(head)
        text = io.TextIOWrapper(
            io.BufferedReader(_Prefixed(head, stream), buffer_size=_SNIFF_BYTES),
            encoding="utf-8-sig",
            # Undecodable bytes become lone surrogates, found line by line, so the error can
            # name the row (a strict decoder fails a block ahead of the parser).
            errors="surrogateescape",
            newline="",
        )
        self._lines = _checked_lines(text)
        first = _first_line(head)
        # Excel writes "sep=;" above the header when asked to say its delimiter.
        declared = re.fullmatch(r"sep=(.)", first.strip())
        delimiter = declared[1] if declared else _pick_delimiter(first)
        self._reader = csv.reader(self._lines, delimiter=delimiter, strict=True)
        self._row_number = 0
        header: list[str] | None = None
        try:
            while header is None or not any(h.strip() for h in header):
                header = next(self._reader, None)
                self._row_number += 1
                if header is None:
                    raise CsvImportError("the file is empty: the first row must name the columns")
                if declared and self._row_number == 1:
                    header = None  # the sep= line
        except (csv.Error, _BadLine) as exc:
            # The row being read when it broke: the one after those read so far.
            raise CsvImportError(f"row {self._row_number + 1} (header): {exc}") from None
        return _layout(header, delimiter, self._row_number)

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """(row number, fields) of each non-blank data row; a broken row raises CsvImportError."""
        width = len(self.layout.columns)
        row_number = self._row_number
        reader = self._reader
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except (csv.Error, _BadLine) as exc:
                raise CsvImportError(f"row {row_number + 1}: {exc}") from None
            row_number += 1
            if not "".join(fields).strip():
                continue  # a blank line, or a spreadsheet's empty row of delimiters
            if len(fields) != width:
                raise CsvImportError(
                    f"row {row_number}: expected {width} fields, got {len(fields)}"
                )
            yield row_number, fields


def _check_head(head: bytes) -> None:
    if not head.strip(b"\xef\xbb\xbf \t\r\n"):
        raise CsvImportError("the file is empty")
    if head.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise CsvImportError(
            "this is a spreadsheet (Excel) file, not CSV: save it as 'CSV UTF-8' first"
        )
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise CsvImportError("the file is UTF-16 text: save it as 'CSV UTF-8' first")
    if b"\x00" in head:
        raise CsvImportError("not a text file (it contains NUL bytes): upload a CSV")


class _BadLine(Exception):
    """A line that cannot be text; `records()` adds the row number."""


def _checked_lines(text: io.TextIOWrapper) -> Iterator[str]:
    for line in text:
        if "\x00" in line:
            raise _BadLine("the file contains NUL bytes, so it is not a text CSV")
        if _UNDECODED.search(line):
            raise _BadLine("the file is not UTF-8 text; save it as 'CSV UTF-8' and upload it again")
        yield line


def _first_line(head: bytes) -> str:
    """The first non-blank line of the file (its header, or Excel's sep= line)."""
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff")
    return next((line for line in text.splitlines() if line.strip()), "")


def _pick_delimiter(first: str) -> str:
    """The delimiter that reveals a phone column, else the most frequent one."""
    for delimiter in DELIMITERS:
        names = {_normalise_header(h) for h in next(csv.reader([first], delimiter=delimiter), [])}
        if names & set(PHONE_HEADERS):
            return delimiter
    return max(DELIMITERS, key=first.count)


COLUMNS_NAMED = 10  # how many column names an error lists before "and N more"


def describe_columns(columns: Sequence[str]) -> str:
    """The first few column names for an error message, however wide the file is."""
    named = [c for c in columns if c]
    found = ", ".join(repr(c[:40]) for c in named[:COLUMNS_NAMED]) or "none"
    if len(named) > COLUMNS_NAMED:
        found += f" and {len(named) - COLUMNS_NAMED:,} more"
    return found


def _layout(header: list[str], delimiter: str, row_number: int = 1) -> CsvLayout:
    columns = tuple(_normalise_header(h) for h in header)
    seen: set[str] = set()
    for name in columns:
        if name and name in seen:
            raise CsvImportError(f"row {row_number} (header): column {name[:80]!r} appears twice")
        seen.add(name)
    phone_index = next(
        (columns.index(h) for h in PHONE_HEADERS if h in columns),
        None,
    )
    if phone_index is None:
        raise CsvImportError(
            f"row {row_number} (header): no phone column: name one column 'phone' (or "
            f"phone_number, msisdn, mobile, wa_id); columns found: {describe_columns(columns)}"
        )
    name_index = columns.index(NAME_HEADER) if NAME_HEADER in columns else None
    return CsvLayout(delimiter, columns, phone_index, name_index)

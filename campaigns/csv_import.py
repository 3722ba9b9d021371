"""Reading a campaign CSV: format checks, E.164 normalisation and template rendering.

Pure functions over a byte stream; nothing here touches the database. The importer in
`messaging/campaign_import.py` drives them and writes the rows.

Row numbers count the header as row 1, as a spreadsheet shows them.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path
from typing import IO, Any

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

from campaigns.models import MessageTemplate

# Header names accepted for the phone column, best first.
PHONE_HEADERS = ("phone", "phone_number", "msisdn", "mobile", "wa_id")
NAME_HEADER = "name"
DELIMITERS = (",", ";", "\t")
_SNIFF_BYTES = 64 * 1024
# Meta refuses template variables with line breaks, tabs or more than 4 spaces in a row (132018).
_BAD_PARAM = re.compile(r"[\n\r\t]| {5}")
_UNDECODED = re.compile("[\udc80-\udcff]")
_VARIABLE = re.compile(r"\{\{\s*([^{}\s]+)\s*\}\}")
# What spreadsheets and copy-paste put into numbers besides digits.
_PHONE_JUNK = str.maketrans(
    dict.fromkeys(
        " \t-.()/\u00a0\u2007\u202f\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d"
        "\u202e\u2060\ufeff\u2010\u2011\u2012\u2013\u2014\u2212'\"",
    )
)
_POSSIBLE_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "wrong number of digits",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "a local number without its area code",
}


class CsvImportError(ValueError):
    """The file cannot be imported at all; str() says what and where."""


class TemplateVariableError(ValueError):
    """A template variable has no value (a row that cannot be rendered)."""


# --- Phone numbers --------------------------------------------------------------------------


def check_region(region: str) -> str:
    region = (region or "").strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise CsvImportError(f"unknown default region {region!r}: use a two-letter country code")
    return region


def normalise_phone(raw: str, region: str) -> tuple[str | None, str]:
    """(E.164, "") for a valid number, else (None, reason).

    `00` is an international prefix everywhere numbers are written without one; `011` and the
    national trunk 0 are the region's business, which libphonenumber knows. Digits that are
    not valid for the region are tried once more as an international number without its `+`
    (wa_id/msisdn exports write them that way).
    """
    cleaned = raw.translate(_PHONE_JUNK)
    if not cleaned:
        return None, "no phone number"
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    digits = cleaned[1:] if cleaned.startswith("+") else cleaned
    if not digits.isdigit() or not digits.isascii():
        if not any(c.isdigit() for c in digits):
            return None, "not a phone number"
        return None, "contains characters other than digits"
    try:
        number = phonenumbers.parse(cleaned, region)
    except NumberParseException as exc:
        return None, _parse_reason(exc)
    if phonenumbers.is_valid_number(number):
        return phonenumbers.format_number(number, PhoneNumberFormat.E164), ""
    if cleaned[0] != "+" and len(cleaned) > 8:
        try:
            intl = phonenumbers.parse("+" + cleaned, None)
        except NumberParseException:
            intl = None
        if intl is not None and phonenumbers.is_valid_number(intl):
            return phonenumbers.format_number(intl, PhoneNumberFormat.E164), ""
    return None, _invalid_reason(number)


def _parse_reason(exc: NumberParseException) -> str:
    if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
        return "unknown country code"
    if exc.error_type in (
        NumberParseException.TOO_SHORT_NSN,
        NumberParseException.TOO_SHORT_AFTER_IDD,
    ):
        return "too short"
    if exc.error_type == NumberParseException.TOO_LONG:
        return "too long"
    return "not a phone number"


def _invalid_reason(number: phonenumbers.PhoneNumber) -> str:
    country = phonenumbers.region_code_for_country_code(number.country_code)
    where = f"+{number.country_code}" if country in ("ZZ", "001") else country
    result = phonenumbers.is_possible_number_with_reason(number)
    if result == ValidationResult.INVALID_COUNTRY_CODE:
        return f"unknown country code +{number.country_code}"
    if result in _POSSIBLE_REASONS:
        return f"{_POSSIBLE_REASONS[result]} for {where}"
    return f"not a valid {where} number"


# --- The file -------------------------------------------------------------------------------


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
        if isinstance(source, (str, Path)):
            path = Path(source)
            if not path.is_file():
                raise CsvImportError(f"{path}: no such file")
            self._owned = stream = path.open("rb")
        else:
            stream = source
            if getattr(stream, "seekable", lambda: False)():
                stream.seek(0)
        try:
            self.layout = self._open(stream)
        except BaseException:
            self.close()
            raise

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
            raise CsvImportError(f"row {self._row_number} (header): {exc}") from None
        return _layout(header, delimiter)

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
            if not any(fields) or not any(f.strip() for f in fields):
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


def _layout(header: list[str], delimiter: str) -> CsvLayout:
    columns = tuple(_normalise_header(h) for h in header)
    seen: set[str] = set()
    for name in columns:
        if name and name in seen:
            raise CsvImportError(f"row 1 (header): column {name!r} appears twice")
        seen.add(name)
    phone_index = next(
        (columns.index(h) for h in PHONE_HEADERS if h in columns),
        None,
    )
    if phone_index is None:
        found = ", ".join(repr(c) for c in columns if c) or "none"
        raise CsvImportError(
            "no phone column: name one column 'phone' (or phone_number, msisdn, mobile, wa_id); "
            f"columns found: {found}"
        )
    name_index = columns.index(NAME_HEADER) if NAME_HEADER in columns else None
    return CsvLayout(delimiter, columns, phone_index, name_index)


# --- Templates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One parameter of the send payload and the column that fills it."""

    column: str
    label: str  # how staff see the variable, e.g. "{{2}}" or "header {{1}}"
    kind: str = "text"  # text | image | video | document | coupon_code
    parameter_name: str | None = None  # NAMED templates only


@dataclass(frozen=True)
class ComponentPlan:
    type: str  # header | body | button
    slots: tuple[Slot, ...]
    sub_type: str | None = None
    index: str | None = None


@dataclass(frozen=True)
class TemplatePlan:
    """How to render one template from rows of one file; see `compile_template`."""

    template_id: int | None
    label: str
    components: tuple[ComponentPlan, ...] = field(default_factory=tuple)

    @property
    def slots(self) -> list[Slot]:
        return [slot for component in self.components for slot in component.slots]


def _variables(text: str) -> list[str]:
    names: list[str] = []
    for name in _VARIABLE.findall(text or ""):
        if name not in names:
            names.append(name)
    return names


def compile_template(template: MessageTemplate, columns: Sequence[str]) -> TemplatePlan:
    """Map each variable of `template` to a column of the file.

    Raises CsvImportError when the file cannot fill a variable at all (a missing column), so a
    whole file fails before any row is read rather than row by row.
    """
    columns = [_normalise_header(c) for c in columns]
    present = set(columns)
    variable_columns = [
        c
        for c in columns
        if c and c not in PHONE_HEADERS and not c.startswith(("header_", "button_"))
    ]
    named = (template.parameter_format or "").upper() == "NAMED"
    label = f"{template.name}:{template.language}"
    components: list[ComponentPlan] = []

    def need(column: str | None, what: str, hint: str) -> str:
        if column is None or column not in present:
            raise CsvImportError(f"template {label} needs {what}: {hint}")
        return column

    def text_slot(variable: str, where: str) -> Slot:
        if named:
            if where == "header":
                header_column = f"header_{variable}".lower()
                column = header_column if header_column in present else variable.lower()
            else:
                column = variable.lower()
            column = need(column, f"{where} {{{{{variable}}}}}", f"add a column named {column!r}")
            return Slot(column, f"{where} {{{{{variable}}}}}", parameter_name=variable)
        if not variable.isdigit():
            raise CsvImportError(
                f"template {label} is POSITIONAL but uses {{{{{variable}}}}}; sync it again"
            )
        n = int(variable)
        if where == "header":
            column = need(f"header_{n}", f"header {{{{{n}}}}}", f"add a column named 'header_{n}'")
        elif f"var{n}" in present:
            column = f"var{n}"
        elif str(n) in present:
            column = str(n)
        elif 0 < n <= len(variable_columns):
            column = variable_columns[n - 1]
        else:
            need(
                None,
                f"body {{{{{n}}}}}",
                f"the file has {len(variable_columns)} variable column(s) "
                f"({', '.join(variable_columns) or 'none'}); add one named 'var{n}'",
            )
        return Slot(column, f"{where} {{{{{n}}}}}" if where != "body" else f"{{{{{n}}}}}")

    for component in template.components or []:
        kind = str(component.get("type", "")).upper()
        if kind == "HEADER":
            fmt = str(component.get("format", "TEXT")).upper()
            if fmt == "TEXT":
                slots = [text_slot(v, "header") for v in _variables(component.get("text", ""))]
                if slots:
                    components.append(ComponentPlan("header", tuple(slots)))
            elif fmt in ("IMAGE", "VIDEO", "DOCUMENT"):
                media = fmt.lower()
                column = f"header_{media}" if f"header_{media}" in present else "header_media"
                need(
                    column,
                    f"an {fmt} header",
                    "add a column 'header_media' with a link or an uploaded media id",
                )
                components.append(
                    ComponentPlan("header", (Slot(column, f"{fmt} header", kind=media),))
                )
        elif kind == "BODY":
            slots = [text_slot(v, "body") for v in _variables(component.get("text", ""))]
            if slots:
                components.append(ComponentPlan("body", tuple(slots)))
        elif kind == "BUTTONS":
            for index, button in enumerate(component.get("buttons", [])):
                button_type = str(button.get("type", "")).upper()
                column = f"button_{index}"
                if button_type == "URL" and _variables(button.get("url", "")):
                    need(column, f"the URL suffix of button {index}", f"add a column {column!r}")
                    slot = Slot(column, f"button {index} URL")
                    components.append(ComponentPlan("button", (slot,), "url", str(index)))
                elif button_type == "COPY_CODE":
                    need(column, f"the code of button {index}", f"add a column {column!r}")
                    slot = Slot(column, f"button {index} code", kind="coupon_code")
                    components.append(ComponentPlan("button", (slot,), "copy_code", str(index)))
    return TemplatePlan(template.pk, label, tuple(components))


def render_plan(plan: TemplatePlan, values: dict[str, str]) -> list[dict[str, Any]]:
    """The Graph API `components` list for one row; TemplateVariableError if a value is empty."""
    rendered: list[dict[str, Any]] = []
    for component in plan.components:
        parameters = [
            _parameter(slot, values.get(slot.column, ""), plan) for slot in component.slots
        ]
        item: dict[str, Any] = {"type": component.type}
        if component.sub_type is not None:
            item["sub_type"] = component.sub_type
            item["index"] = component.index
        item["parameters"] = parameters
        rendered.append(item)
    return rendered


def _parameter(slot: Slot, value: str, plan: TemplatePlan) -> dict[str, Any]:
    value = (value or "").strip()
    problem = value_problem(value)
    if problem:
        raise TemplateVariableError(
            f"column {slot.column!r} {problem} (template {plan.label} {slot.label})"
        )
    if slot.kind == "text":
        parameter: dict[str, Any] = {"type": "text", "text": value}
        if slot.parameter_name is not None:
            parameter["parameter_name"] = slot.parameter_name
        return parameter
    if slot.kind == "coupon_code":
        return {"type": "coupon_code", "coupon_code": value}
    media = {"link": value} if is_link(value) else {"id": value}
    return {"type": slot.kind, slot.kind: media}


def is_link(value: str) -> bool:
    return value.lower().startswith(("https://", "http://"))


def value_problem(value: str) -> str:
    """Why WhatsApp would refuse `value` as a template variable, or "" if it would not."""
    if not value:
        return "is empty"
    if _BAD_PARAM.search(value):
        return "has a line break, tab or 5+ spaces in a row, which WhatsApp refuses"
    return ""


def render_components(template: MessageTemplate, attributes: dict[str, Any]) -> list[dict]:
    """Render `template` for one contact: the Graph API `components` list.

    `attributes` maps column names to values in file order (positional variables without a
    `var<n>` column take the n-th one, the phone column excluded). Raises CsvImportError when a
    variable has no column at all and TemplateVariableError when its value is empty.
    """
    values = {_normalise_header(k): "" if v is None else str(v) for k, v in attributes.items()}
    plan = compile_template(template, list(values))
    return render_plan(plan, values)


# --- Interleaving ---------------------------------------------------------------------------


def interleave_pattern(weights: Sequence[int]) -> list[int]:
    """One period of smooth weighted round-robin: indexes into `weights`, spread evenly.

    Equal weights give 0,1,2,0,1,2…; (5,1,1) gives 0,0,1,0,2,0,0 (nginx's algorithm), so a
    template never runs in a block. The period is sum(weights) / gcd(weights).
    """
    if not weights or any(w < 1 for w in weights):
        raise ValueError("every template weight must be a whole number of at least 1")
    divisor = 0
    for w in weights:
        divisor = gcd(divisor, w)
    reduced = [w // divisor for w in weights]
    total = sum(reduced)
    current = [0] * len(reduced)
    pattern: list[int] = []
    for _ in range(total):
        for i, w in enumerate(reduced):
            current[i] += w
        best = max(range(len(reduced)), key=lambda i: current[i])
        current[best] -= total
        pattern.append(best)
    return pattern


def required_columns(plans: Iterable[TemplatePlan]) -> dict[str, str]:
    """Column -> the first template variable that needs it, over every template.

    A row must fill all of them: which template a contact gets depends on its place in the
    queue, decided only after duplicates and suppressed numbers are dropped.
    """
    needed: dict[str, str] = {}
    for plan in plans:
        for slot in plan.slots:
            needed.setdefault(slot.column, f"template {plan.label} {slot.label}")
    return needed


# --- Rows -----------------------------------------------------------------------------------


@dataclass(slots=True)
class CsvRow:
    """One data row: `phone` is E.164 when the row is usable, else `reason` says why not."""

    row_number: int
    phone: str | None
    name: str
    values: dict[str, str]  # non-empty non-phone cells (name included), in file order
    raw_phone: str
    reason: str = ""


def parse_rows(
    csv_file: CsvFile, *, region: str, needed: dict[str, str] | None = None
) -> Iterator[CsvRow]:
    """Every data row of `csv_file`, normalised and checked, streaming."""
    layout = csv_file.layout
    phone_index = layout.phone_index
    value_columns = layout.value_columns
    needed = needed or {}
    for row_number, fields in csv_file.records():
        raw = fields[phone_index].strip()
        values = {}
        for index, column in value_columns:
            value = fields[index].strip()
            if value:
                values[column] = value
        name = values.get(NAME_HEADER, "")[:200]
        phone, reason = normalise_phone(raw, region)
        if phone is not None:
            for column, used_by in needed.items():
                problem = value_problem(values.get(column, ""))
                if problem:
                    reason = f"column {column!r} {problem} (needed by {used_by})"
                    phone = None
                    break
        yield CsvRow(row_number, phone, name, values, raw[:255], reason[:255])

"""Template variables mapped to CSV columns, and rows rendered to Graph API `components`."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from campaigns.csv_import.errors import CsvImportError, TemplateVariableError
from campaigns.csv_import.reader import PHONE_HEADERS, _normalise_header

if TYPE_CHECKING:  # the package stays importable without Django (the parse process)
    from campaigns.models import MessageTemplate

# Meta refuses template variables with line breaks, tabs or more than 4 spaces in a row (132018).
_BAD_WHITESPACE_PARTS = ("\n", "\r", "\t", " " * 5)
_NEWLINE, _RETURN, _TAB, _FIVE_SPACES = _BAD_WHITESPACE_PARTS
# A template's body is at most 1,024 characters after substitution (docs/csv-import.md): a
# longer value can never fit, and WhatsApp would refuse the send (132005).
MAX_VARIABLE_CHARS = 1024
# A str as JSON text, non-ASCII kept (json.dumps(value, ensure_ascii=False), in C).
json_string: Callable[[str], str] = json.encoder.encode_basestring
# The columns that hold a media header: an http(s) link or the id of an uploaded media.
MEDIA_COLUMNS = ("header_media", "header_image", "header_video", "header_document")
_MEDIA_LINK = re.compile(r"^https?://[^\s/?#]+\S*$", re.IGNORECASE)
_MEDIA_ID = re.compile(r"^[0-9]{1,32}$")
_VARIABLE = re.compile(r"\{\{\s*([^{}\s]+)\s*\}\}")


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


def _variables(text: object) -> list[str]:
    if text is not None and not isinstance(text, str):
        # Stored before load_templates checked it (or edited by hand): refuse, don't crash.
        raise CsvImportError(
            f"a template text is {type(text).__name__} {text!r:.40}, not text: load or sync the "
            "template again"
        )
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
                column = f"header_{media}" if f"header_{media}" in present else MEDIA_COLUMNS[0]
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


def plan_json(plan: TemplatePlan) -> Callable[[dict[str, str]], str]:
    """A function giving `render_plan(plan, values)` as JSON text, for rows whose values
    `check_row` has already checked (the import COPYs the text as is): the constant parts are
    encoded once, so a row costs one string encoding per variable (tested against
    render_plan)."""
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    # The text in order: constant strings, and the slots whose values go between them. A text
    # or coupon slot's own constant text goes into the strings around its value.
    pieces: list[str | Slot] = ["["]
    for number, component in enumerate(plan.components):
        head: dict[str, Any] = {"type": component.type}
        if component.sub_type is not None:
            head["sub_type"] = component.sub_type
            head["index"] = component.index
        pieces.append(("," if number else "") + encode(head)[:-1] + ',"parameters":[')
        for i, slot in enumerate(component.slots):
            if i:
                pieces.append(",")
            if slot.kind == "text":
                pieces += ['{"type":"text","text":', slot]
                if slot.parameter_name is not None:
                    pieces.append(',"parameter_name":' + encode(slot.parameter_name))
                pieces.append("}")
            elif slot.kind == "coupon_code":
                pieces += ['{"type":"coupon_code","coupon_code":', slot, "}"]
            else:
                pieces.append(slot)
        pieces.append("]}")
    pieces.append("]")
    merged: list[str | Slot] = []
    for piece in pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        else:
            merged.append(piece)
    first = merged[0] if isinstance(merged[0], str) else ""
    # (column, the media slot or None for an encoded string, the constant text after it)
    steps: list[tuple[str, Slot | None, str]] = []
    for index, piece in enumerate(merged):
        if isinstance(piece, Slot):
            after = merged[index + 1] if index + 1 < len(merged) else ""
            media = None if piece.kind in ("text", "coupon_code") else piece
            steps.append((piece.column, media, after if isinstance(after, str) else ""))

    def media_json(slot: Slot, value: str) -> str:
        media = {"link": value} if is_link(value) else {"id": value}
        return encode({"type": slot.kind, slot.kind: media})

    def render(values: dict[str, str]) -> str:
        out = [first]
        for column, media, after in steps:
            value = values.get(column, "")
            out.append(json_string(value) if media is None else media_json(media, value))
            out.append(after)
        return "".join(out)

    return render


def _parameter(slot: Slot, value: str, plan: TemplatePlan) -> dict[str, Any]:
    value = (value or "").strip()
    problem = value_problem(value, slot.column)
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


_EMPTY = "is empty"
_BAD_WHITESPACE = "has a line break, tab or 5+ spaces in a row, which WhatsApp refuses"
_TOO_LONG = f"is longer than {MAX_VARIABLE_CHARS} characters, which WhatsApp refuses"
_NOT_MEDIA = "is neither an http(s) link nor an uploaded media id"


def value_problem(value: str, column: str = "") -> str:
    """Why WhatsApp would refuse `value` in `column` as a template variable, or "".

    The one check of a variable's value for every import path (CSV rows, audiences; in SQL
    through `value_problem_sql`): a media column takes only an http(s) link or a media id
    (never `javascript:` or `file:`), any other a text of at most MAX_VARIABLE_CHARS.
    """
    if not value:
        return _EMPTY
    if column in MEDIA_COLUMNS:
        return "" if _MEDIA_LINK.match(value) or _MEDIA_ID.match(value) else _NOT_MEDIA
    # Four substring tests, written out: a quarter of any() over a generator's cost, and a
    # fifth of a regular expression's (3 variables a row, a million rows an import).
    if _NEWLINE in value or _RETURN in value or _TAB in value or _FIVE_SPACES in value:
        return _BAD_WHITESPACE
    if len(value) > MAX_VARIABLE_CHARS:
        return _TOO_LONG
    return ""


def value_problem_sql(
    expression: str, params: Sequence[Any] = (), column: str = ""
) -> tuple[str, list[Any]]:
    """`value_problem` as a PostgreSQL expression over the text `expression` (with its
    `params`): NULL when the value is usable, else the same words. For imports that check rows
    where they are, in the database; kept next to `value_problem` and tested against it."""
    empty = f"CASE WHEN coalesce({expression}, '') = '' THEN %s "
    if column in MEDIA_COLUMNS:
        return (
            empty + f"WHEN NOT ({expression} ~* %s OR {expression} ~ %s) THEN %s END",
            [*params, _EMPTY, *params, _MEDIA_LINK.pattern, *params, _MEDIA_ID.pattern, _NOT_MEDIA],
        )
    return (
        empty + f"WHEN {expression} ~ '[\\n\\r\\t]| {{5}}' THEN %s "
        f"WHEN length({expression}) > {MAX_VARIABLE_CHARS} THEN %s END",
        [*params, _EMPTY, *params, _BAD_WHITESPACE, *params, _TOO_LONG],
    )


def render_components(template: MessageTemplate, attributes: dict[str, Any]) -> list[dict]:
    """Render `template` for one contact: the Graph API `components` list.

    `attributes` maps column names to values in file order (positional variables without a
    `var<n>` column take the n-th one, the phone column excluded). Raises CsvImportError when a
    variable has no column at all and TemplateVariableError when its value is empty.
    """
    values = {_normalise_header(k): "" if v is None else str(v) for k, v in attributes.items()}
    plan = compile_template(template, list(values))
    return render_plan(plan, values)


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


def _parameter_text(parameter: dict[str, Any]) -> str:
    kind = parameter.get("type", "text")
    value = parameter.get(kind, "")
    if isinstance(value, dict):
        value = value.get("link") or value.get("id") or value.get("fallback_value") or ""
    return str(value)


def _fill(text: str, parameters: list[dict[str, Any]]) -> str:
    named = {p["parameter_name"]: _parameter_text(p) for p in parameters if "parameter_name" in p}
    positional = [_parameter_text(p) for p in parameters]

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in named:
            return named[name]
        if name.isdigit() and 0 < int(name) <= len(positional):
            return positional[int(name) - 1]
        return match.group(0)  # not filled: shown as the variable

    return _VARIABLE.sub(value, text)


def message_text(template: MessageTemplate, components: list[dict[str, Any]]) -> str:
    """What the person sees: the template's header, body and footer with the rendered
    parameters filled in, media as [image …], buttons as [label]. Staff read this in the
    wizard's preview and in the inbox."""
    given: dict[str, list[dict[str, Any]]] = {}
    for component in components or []:
        if str(component.get("type", "")).lower() in ("header", "body", "footer"):
            given[str(component["type"]).lower()] = list(component.get("parameters", []))
    lines: list[str] = []
    for part in template.components or []:
        kind = str(part.get("type", "")).upper()
        parameters = given.get(kind.lower(), [])
        if kind == "HEADER" and str(part.get("format", "TEXT")).upper() != "TEXT":
            media = _parameter_text(parameters[0]) if parameters else ""
            lines.append(f"[{str(part.get('format')).lower()} {media}]".replace(" ]", "]"))
        elif kind in ("HEADER", "BODY", "FOOTER") and part.get("text"):
            lines.append(_fill(str(part["text"]), parameters))
        elif kind == "BUTTONS":
            labels = [str(b.get("text", "")) for b in part.get("buttons", []) if b.get("text")]
            if labels:
                lines.append(" ".join(f"[{label}]" for label in labels))
    return "\n".join(lines)

"""Webhook bodies: the shape check the view runs, and parsing into small typed events.

Parsing is pure Python and lenient below the envelope, item by item: a status, message,
preference or account event that could not be stored (no id, a NUL character or broken Unicode
that PostgreSQL refuses, an error code beyond a 32-bit integer) is set aside as a
`RejectedItem` with its place and reason, and every other item of the body is applied, because
Meta never resends a body we answered 200 to.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

logger = logging.getLogger(__name__)

OBJECT = "whatsapp_business_account"
INT32 = range(-(2**31), 2**31)  # StatusLog.error_code and OutboundMessage.error_code


class PayloadError(ValueError):
    """The body is not JSON or not a WhatsApp webhook envelope; the message says where."""


def check_envelope(body: bytes) -> dict[str, Any]:
    """Parse and check the envelope (object, entry[].changes[].field/value) or raise."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError("body is not a JSON object")
    if data.get("object") != OBJECT:
        raise PayloadError(f"'object' is {data.get('object')!r}, expected {OBJECT!r}")
    entries = data.get("entry")
    if not isinstance(entries, list) or not entries:
        raise PayloadError("'entry' is missing or not a non-empty list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            raise PayloadError(f"entry[{i}] has no 'changes' list")
        for j, change in enumerate(entry["changes"]):
            if (
                not isinstance(change, dict)
                or not isinstance(change.get("field"), str)
                or not isinstance(change.get("value"), dict)
            ):
                raise PayloadError(f"entry[{i}].changes[{j}] needs a 'field' and a 'value' object")
    return data


@dataclass(frozen=True)
class StatusEvent:
    wamid: str
    status: str
    timestamp: datetime
    recipient_id: str = ""
    callback_data: str = ""
    error_code: int | None = None
    error_title: str = ""


@dataclass(frozen=True)
class InboundEvent:
    phone_number_id: str
    wamid: str
    wa_id: str  # digits, or "" for username-only users (2026 BSUIDs)
    user_id: str  # BSUID, or ""
    user_name: str
    type: str
    text: str
    button_payload: str
    context_wamid: str
    timestamp: datetime
    raw: dict[str, Any]


@dataclass(frozen=True)
class PreferenceEvent:
    phone_number_id: str
    wa_id: str
    category: str
    value: str  # "stop" or "resume"


@dataclass(frozen=True)
class AccountEvent:
    """Template status/quality and phone-number quality updates."""

    field: str
    waba_id: str
    value: dict[str, Any]


@dataclass(frozen=True)
class RejectedItem:
    """One item of a signed body that was not applied: where it was, why, and the item."""

    where: str  # e.g. "entry[0].changes[1].value.statuses[3]"
    reason: str
    item: Any


@dataclass
class ParsedBody:
    statuses: list[StatusEvent] = field(default_factory=list)
    inbound: list[InboundEvent] = field(default_factory=list)
    preferences: list[PreferenceEvent] = field(default_factory=list)
    account: list[AccountEvent] = field(default_factory=list)
    rejected: list[RejectedItem] = field(default_factory=list)

    def items(self) -> list[tuple[str, object, ParsedBody]]:
        """(label, event, a body of that event alone) per event: what the drain applies one by
        one when the whole body fails for a reason parsing could not foresee."""
        kinds = (
            ("status", self.statuses, "statuses"),
            ("message", self.inbound, "inbound"),
            ("preference", self.preferences, "preferences"),
            ("account event", self.account, "account"),
        )
        return [
            (
                f"{label} {getattr(event, 'wamid', '') or getattr(event, 'field', '')}".strip(),
                event,
                self._alone(name, event),
            )
            for label, events, name in kinds
            for event in events
        ]

    @staticmethod
    def _alone(name: str, event: object) -> ParsedBody:
        body = ParsedBody()
        getattr(body, name).append(event)
        return body


def unstorable(value: Any) -> str | None:
    """Why PostgreSQL would refuse this JSON value in a text or jsonb column, or None.

    NUL characters and lone surrogates (both valid JSON escapes) are the two things json.loads
    accepts and PostgreSQL does not.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "contains a NUL character"
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return "contains invalid Unicode (a lone surrogate)"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _ts(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return timezone.now()


def _str(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _status(item: Any) -> StatusEvent | str:
    """The status event, or why the item cannot be applied."""
    item = _dict(item)
    wamid, status = _str(item.get("id"), 128), _str(item.get("status"), 16)
    if not wamid or not status:
        return "a status needs an 'id' and a 'status'"
    errors = [e for e in _list(item.get("errors")) if isinstance(e, dict)]
    code = errors[0].get("code") if errors else None
    title = (errors[0].get("title") or errors[0].get("message")) if errors else ""
    if isinstance(code, int) and not isinstance(code, bool) and code not in INT32:
        return f"error code {code} is beyond a 32-bit integer"
    if problem := unstorable(item):
        return problem
    return StatusEvent(
        wamid=wamid,
        status=status,
        timestamp=_ts(item.get("timestamp")),
        recipient_id=_str(item.get("recipient_id"), 32),
        callback_data=_str(item.get("biz_opaque_callback_data"), 512),
        error_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        error_title=_str(title, 255),
    )


def _text_of(message: dict[str, Any]) -> tuple[str, str]:
    """(text shown in the inbox, button payload) for the message types we understand."""
    kind = message.get("type")
    if kind == "text":
        return _str(_dict(message.get("text")).get("body"), 4096), ""
    if kind == "button":
        button = _dict(message.get("button"))
        return _str(button.get("text"), 4096), _str(button.get("payload"), 512)
    if kind == "interactive":
        interactive = _dict(message.get("interactive"))
        reply = _dict(interactive.get("button_reply") or interactive.get("list_reply"))
        return _str(reply.get("title"), 4096), _str(reply.get("id"), 512)
    media = _dict(message.get(kind)) if isinstance(kind, str) else {}
    return _str(media.get("caption"), 4096), ""


def _inbound(value: dict[str, Any], phone_number_id: str, where: str, parsed: ParsedBody) -> None:
    contacts = [c for c in _list(value.get("contacts")) if isinstance(c, dict)]
    by_wa_id = {c.get("wa_id"): c for c in contacts if c.get("wa_id")}
    for i, message in enumerate(_list(value.get("messages"))):
        message = _dict(message)
        wamid = _str(message.get("id"), 128)
        wa_id = _str(message.get("from"), 32)
        # Username-only users have no `from`; with one contact the pairing is unambiguous.
        contact = by_wa_id.get(wa_id) or (contacts[0] if len(contacts) == 1 else {})
        problem = "a message needs an 'id'" if not wamid else unstorable([message, contact])
        if problem:
            parsed.rejected.append(RejectedItem(f"{where}.messages[{i}]", problem, message))
            continue
        text, payload = _text_of(message)
        parsed.inbound.append(
            InboundEvent(
                phone_number_id=phone_number_id,
                wamid=wamid,
                wa_id=wa_id,
                user_id=_str(contact.get("user_id"), 64),
                user_name=_str(_dict(contact.get("profile")).get("name"), 200),
                type=_str(message.get("type"), 32) or "unknown",
                text=text,
                button_payload=payload,
                context_wamid=_str(_dict(message.get("context")).get("id"), 128),
                timestamp=_ts(message.get("timestamp")),
                raw={"message": message, "contact": contact},
            )
        )


def parse(data: dict[str, Any]) -> ParsedBody:
    """Every status, message, preference and account event in an envelope checked earlier;
    items that cannot be applied go to `rejected` with their place and reason."""
    parsed = ParsedBody()
    for e, entry in enumerate(data["entry"]):
        waba_id = str(entry.get("id", ""))
        for c, change in enumerate(entry["changes"]):
            name, value = change["field"], change["value"]
            where = f"entry[{e}].changes[{c}].value"
            metadata = _dict(value.get("metadata"))
            phone_number_id = str(metadata.get("phone_number_id", ""))
            if problem := unstorable([waba_id, phone_number_id]):
                parsed.rejected.append(RejectedItem(where, f"metadata {problem}", value))
            elif name == "messages":
                for i, item in enumerate(_list(value.get("statuses"))):
                    event = _status(item)
                    if isinstance(event, str):
                        parsed.rejected.append(RejectedItem(f"{where}.statuses[{i}]", event, item))
                    else:
                        parsed.statuses.append(event)
                _inbound(value, phone_number_id, where, parsed)
            elif name == "user_preferences":
                _preferences(value, phone_number_id, where, parsed)
            elif name in ACCOUNT_FIELDS:
                if problem := unstorable(value):
                    parsed.rejected.append(RejectedItem(where, problem, value))
                else:
                    parsed.account.append(AccountEvent(field=name, waba_id=waba_id, value=value))
            else:
                logger.debug("webhook field %s ignored", name)
    return parsed


ACCOUNT_FIELDS = (
    "message_template_status_update",
    "message_template_quality_update",
    "phone_number_quality_update",
    "business_capability_update",
)


def _preferences(
    value: dict[str, Any], phone_number_id: str, where: str, parsed: ParsedBody
) -> None:
    for i, item in enumerate(_list(value.get("user_preferences"))):
        item = _dict(item)
        wa_id = _str(item.get("wa_id"), 32)
        problem = "a preference needs a 'wa_id'" if not wa_id else unstorable(item)
        if problem:
            parsed.rejected.append(RejectedItem(f"{where}.user_preferences[{i}]", problem, item))
            continue
        parsed.preferences.append(
            PreferenceEvent(
                phone_number_id=phone_number_id,
                wa_id=wa_id,
                category=_str(item.get("category"), 64),
                value=_str(item.get("value"), 16).lower(),
            )
        )

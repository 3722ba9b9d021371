"""Webhook bodies: the shape check the view runs, and parsing into small typed events.

Parsing is pure Python and lenient below the envelope: one bad status or message is skipped
(and logged) without losing the rest of the delivery, because Meta never resends a body we
answered 200 to.
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


@dataclass
class ParsedBody:
    statuses: list[StatusEvent] = field(default_factory=list)
    inbound: list[InboundEvent] = field(default_factory=list)
    preferences: list[PreferenceEvent] = field(default_factory=list)
    account: list[AccountEvent] = field(default_factory=list)
    skipped: int = 0


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


def _status(item: Any) -> StatusEvent | None:
    item = _dict(item)
    wamid, status = _str(item.get("id"), 128), _str(item.get("status"), 16)
    if not wamid or not status:
        return None
    errors = [e for e in _list(item.get("errors")) if isinstance(e, dict)]
    code = errors[0].get("code") if errors else None
    title = (errors[0].get("title") or errors[0].get("message")) if errors else ""
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


def _inbound(value: dict[str, Any], phone_number_id: str) -> list[InboundEvent]:
    contacts = [c for c in _list(value.get("contacts")) if isinstance(c, dict)]
    by_wa_id = {c.get("wa_id"): c for c in contacts if c.get("wa_id")}
    events = []
    for message in _list(value.get("messages")):
        message = _dict(message)
        wamid = _str(message.get("id"), 128)
        if not wamid:
            continue
        wa_id = _str(message.get("from"), 32)
        # Username-only users have no `from`; with one contact the pairing is unambiguous.
        contact = by_wa_id.get(wa_id) or (contacts[0] if len(contacts) == 1 else {})
        text, payload = _text_of(message)
        events.append(
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
    return events


def parse(data: dict[str, Any]) -> ParsedBody:
    """Every status, message, preference and account event in an envelope checked earlier."""
    parsed = ParsedBody()
    for entry in data["entry"]:
        waba_id = str(entry.get("id", ""))
        for change in entry["changes"]:
            name, value = change["field"], change["value"]
            metadata = _dict(value.get("metadata"))
            phone_number_id = str(metadata.get("phone_number_id", ""))
            if name == "messages":
                for item in _list(value.get("statuses")):
                    event = _status(item)
                    if event is None:
                        parsed.skipped += 1
                    else:
                        parsed.statuses.append(event)
                parsed.inbound.extend(_inbound(value, phone_number_id))
            elif name == "user_preferences":
                for item in _list(value.get("user_preferences")):
                    item = _dict(item)
                    wa_id = _str(item.get("wa_id"), 32)
                    if wa_id:
                        parsed.preferences.append(
                            PreferenceEvent(
                                phone_number_id=phone_number_id,
                                wa_id=wa_id,
                                category=_str(item.get("category"), 64),
                                value=_str(item.get("value"), 16).lower(),
                            )
                        )
            elif name in (
                "message_template_status_update",
                "message_template_quality_update",
                "phone_number_quality_update",
            ):
                parsed.account.append(AccountEvent(field=name, waba_id=waba_id, value=value))
            else:
                logger.debug("webhook field %s ignored", name)
    if parsed.skipped:
        logger.warning("skipped %d status item(s) without id or status", parsed.skipped)
    return parsed

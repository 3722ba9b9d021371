"""Inbound messages (stored once, attributed to a campaign), opt-out keywords and preferences."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from campaigns.models import Contact, SenderNumber, Suppression
from messaging import minutes
from messaging.integrations.events.payloads import publish_inbound
from messaging.models import OutboundMessage, OutboundStatus, to_numbers
from messaging.policy.optout import opt_in, opt_out
from messaging.sql_paths import postgres_fast_paths
from webhooks.models import InboundMessage
from webhooks.payload import InboundEvent, PreferenceEvent

logger = logging.getLogger(__name__)

OPT_OUT_PAYLOAD_PREFIX = "OPTOUT"
REACHED = (
    OutboundStatus.ACCEPTED,
    OutboundStatus.SENT,
    OutboundStatus.DELIVERED,
    OutboundStatus.READ,
)
_TABLE = InboundMessage._meta.db_table


def is_opt_out(event: InboundEvent) -> bool:
    """A whole-message keyword (trimmed, any case) or our templates' opt-out button payload."""
    if event.button_payload.upper().startswith(OPT_OUT_PAYLOAD_PREFIX):
        return True
    if event.type not in ("text", "button", "interactive"):
        return False
    keywords = {k.strip().casefold() for k in settings.OPT_OUT_KEYWORDS}
    return " ".join(event.text.split()).casefold() in keywords


def phones_for_wa_ids(wa_ids: Iterable[str]) -> dict[str, set[str]]:
    """Every E.164 a WhatsApp id stands for: `+digits` and the contacts last seen with it."""
    wa_ids = {w for w in wa_ids if w.isdigit()}
    phones = {w: {"+" + w} for w in wa_ids}
    for wa_id, phone in Contact.objects.filter(wa_id__in=wa_ids).values_list("wa_id", "phone"):
        phones[wa_id].add(phone)
    return phones


def _user_phone(event: InboundEvent, known: dict[str, set[str]]) -> str:
    if event.wa_id.isdigit():
        forms = known.get(event.wa_id, set())
        # Prefer the contact's E.164 (what the queue rows use) over the raw wa_id form.
        stored = sorted(forms - {"+" + event.wa_id})
        return stored[0] if stored else "+" + event.wa_id
    return event.user_id[:32]


def _attribute(
    event: InboundEvent, sender_id: int, phones: set[str], by_context: dict
) -> int | None:
    if event.context_wamid in by_context:
        return by_context[event.context_wamid]
    if not phones:
        return None
    window = timedelta(hours=settings.REPLY_ATTRIBUTION_WINDOW_HOURS)
    # The latest message that reached this user.
    return (
        OutboundMessage.objects.filter(
            to_numbers(phones),
            sender_id=sender_id,
            status__in=REACHED,
            accepted_at__gte=event.timestamp - window,
            accepted_at__lte=event.timestamp,
        )
        .order_by("-id")
        .values_list("campaign_id", flat=True)
        .first()
    )


def _store(fields: dict[str, Any]) -> int | None:
    """Insert one inbound message unless its wamid is stored already; its id, or None."""
    if not postgres_fast_paths():
        # The caller's transaction holds SQLite's write lock: nobody inserts in between.
        if InboundMessage.objects.filter(wamid=fields["wamid"]).exists():
            return None
        return InboundMessage.objects.create(**fields).pk
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_TABLE} (sender_id, user_phone, user_name, wamid, type, text, "  # noqa: S608
            "payload, context_wamid, campaign_id, timestamp, received_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, now()) "
            "ON CONFLICT (wamid) DO NOTHING RETURNING id",
            [
                *(fields[k] for k in ("sender_id", "user_phone", "user_name", "wamid", "type")),
                fields["text"],
                json.dumps(fields["payload"]),
                fields["context_wamid"],
                fields["campaign_id"],
                fields["timestamp"],
            ],
        )
        row = cursor.fetchone()
    return None if row is None else row[0]


@transaction.atomic
def record_inbound(*, events: Sequence[InboundEvent]) -> list[int]:
    """Store new inbound messages, act on opt-outs; returns ids of new messages to answer."""
    if not events:
        return []
    senders = dict(
        SenderNumber.objects.filter(
            phone_number_id__in={e.phone_number_id for e in events}
        ).values_list("phone_number_id", "pk")
    )
    known = phones_for_wa_ids(e.wa_id for e in events)
    by_context = dict(
        OutboundMessage.objects.filter(
            wamid__in={e.context_wamid for e in events if e.context_wamid}
        ).values_list("wamid", "campaign_id")
    )
    to_answer, opted_out = [], set()
    replies = minutes.Deltas()
    last_inbound: dict[str, datetime] = {}
    received: list[dict] = []
    for event in events:
        sender_id = senders.get(event.phone_number_id)
        if sender_id is None:
            logger.warning(
                "inbound %s for unknown phone-number-id %s skipped",
                event.wamid,
                event.phone_number_id,
            )
            continue
        phones = known.get(event.wa_id, set())
        attributed = _attribute(event, sender_id, phones, by_context)
        payload = {**event.raw, "user_id": event.user_id, "wa_id": event.wa_id}
        inbound_id = _store(
            dict(
                sender_id=sender_id,
                user_phone=_user_phone(event, known),
                user_name=event.user_name,
                wamid=event.wamid,
                type=event.type,
                text=event.text,
                payload=payload,
                context_wamid=event.context_wamid,
                campaign_id=attributed,
                timestamp=event.timestamp,
            )
        )
        if inbound_id is None:
            continue  # a redelivery: already stored and acted on
        if attributed is not None:
            replies.add(attributed, event.timestamp, "replied")
        for phone in phones:
            last_inbound[phone] = max(event.timestamp, last_inbound.get(phone, event.timestamp))
        received.append(
            {
                "inbound_id": inbound_id,
                "from": _user_phone(event, known),
                "sender_id": sender_id,
                "type": event.type,
                "text": event.text,
                "wamid": event.wamid,
                "campaign_id": attributed,
                "timestamp": event.timestamp,
            }
        )
        if is_opt_out(event) and phones:
            opted_out |= phones
        else:
            to_answer.append(inbound_id)
    for phone, at in last_inbound.items():
        # Opens (or extends) the person's customer-service window (messaging.policy.budget).
        Contact.objects.filter(phone=phone).exclude(last_inbound_at__gte=at).update(
            last_inbound_at=at
        )
    publish_inbound(received)  # outbound events, in this transaction
    if opted_out:
        opt_out(phones=opted_out, source=Suppression.Source.KEYWORD, reason="opt-out keyword")
    # Last: after anything that locks a campaign row (messaging.minutes' lock order).
    minutes.write(replies)
    return to_answer


@transaction.atomic
def record_preferences(*, events: Sequence[PreferenceEvent]) -> None:
    """WhatsApp's in-app "stop marketing" / "resume" (`user_preferences` webhook), in order."""
    events = [e for e in events if e.category == "marketing_messages"]
    known = phones_for_wa_ids(e.wa_id for e in events)
    for event in events:
        phones = known.get(event.wa_id, set())
        if event.value == "stop" and phones:
            opt_out(phones=phones, source=Suppression.Source.USER_PREFERENCES, reason="stop")
        elif event.value == "resume":
            # Only lift what this channel set: a keyword or staff suppression stays.
            opt_in(phones=phones, source=Suppression.Source.USER_PREFERENCES)

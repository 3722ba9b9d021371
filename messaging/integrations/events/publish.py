"""Write outbox rows in the caller's transaction, only for event types someone subscribed to.

The hot paths (the sender's record step, the status ladder) pay one dictionary lookup when
nobody subscribed, and one set-based INSERT per batch when someone did. The subscription set
is cached per process for a few seconds (and dropped at once when a subscription is saved in
this process), so a new subscription takes effect within CACHE_SECONDS everywhere.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any

from django.db import connection, transaction
from django.db.models.signals import post_delete, post_save

from messaging.integrations.events.signals import outbound_event
from messaging.integrations.events.sql import prepared_cursor
from messaging.integrations.models import EventSubscription, EventType, OutboxEvent
from messaging.models import OutboundMessage, OutboundStatus

CACHE_SECONDS = 5.0
_OUTBOX = OutboxEvent._meta.db_table
_QUEUE = OutboundMessage._meta.db_table
_cache: dict[str, Any] = {"until": 0.0, "by_type": {}}
_cache_lock = threading.Lock()

# Queue statuses reported to the outside, by their event type.
MESSAGE_EVENTS = {
    OutboundStatus.ACCEPTED: EventType.MESSAGE_ACCEPTED,
    OutboundStatus.SENT: EventType.MESSAGE_SENT,
    OutboundStatus.DELIVERED: EventType.MESSAGE_DELIVERED,
    OutboundStatus.READ: EventType.MESSAGE_READ,
    OutboundStatus.FAILED: EventType.MESSAGE_FAILED,
    # Not sent before its valid_until (the claim's screen, or maintenance for a row no claim
    # reached): the caller of a send with a ttl learns it will never go.
    OutboundStatus.EXPIRED: EventType.MESSAGE_EXPIRED,
}


def subscribers(event_type: str) -> list[int]:
    """Ids of the active subscriptions that want `event_type` (cached)."""
    now = time.monotonic()
    if now >= _cache["until"]:
        with _cache_lock:
            if now >= _cache["until"]:
                by_type: dict[str, list[int]] = {t: [] for t in EventType.values}
                for sub in EventSubscription.objects.filter(active=True).order_by("pk"):
                    for t in by_type:
                        if sub.wants(t):
                            by_type[t].append(sub.pk)
                _cache["by_type"] = by_type
                _cache["until"] = now + CACHE_SECONDS
    return _cache["by_type"].get(event_type, [])


def forget_subscriptions(**_: object) -> None:
    _cache["until"] = 0.0


post_save.connect(forget_subscriptions, sender=EventSubscription)
post_delete.connect(forget_subscriptions, sender=EventSubscription)


def _after_commit(event_type: str, payloads: list[dict[str, Any]]) -> None:
    if outbound_event.has_listeners():
        transaction.on_commit(
            lambda: [outbound_event.send(None, event_type=event_type, data=p) for p in payloads]
        )


def publish(event_type: str, payloads: Sequence[dict[str, Any]]) -> None:
    """Events of one type, in order, to every subscription that wants them (same transaction)."""
    if not payloads:
        return
    payloads = list(payloads)
    subs = subscribers(event_type)
    if subs and connection.vendor != "postgresql":  # the SQLite quickstart
        OutboxEvent.objects.bulk_create(
            OutboxEvent(subscription_id=s, event_type=event_type, payload=p)
            for s in subs
            for p in payloads
        )
        _kick_on_commit()
    elif subs:
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {_OUTBOX} (subscription_id, event_type, payload) "  # noqa: S608
                "SELECT s.id, %s, p.value FROM unnest(%s::bigint[]) AS s(id) "
                "CROSS JOIN jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS p(value, n) "
                "ORDER BY s.id, p.n",
                [event_type, subs, json.dumps(payloads, default=str)],
            )
        _kick_on_commit()
    _after_commit(event_type, payloads)


# One statement builds every message event from the queue row as just written.
_MESSAGE_SELECT = f"""
SELECT v.n, v.event_type, jsonb_build_object(
    'message_id', m.id, 'campaign_id', m.campaign_id, 'to', m.phone, 'wamid', m.wamid,
    'status', v.label,
    'at', COALESCE(CASE v.label WHEN 'accepted' THEN m.accepted_at WHEN 'sent' THEN m.sent_at
        WHEN 'delivered' THEN m.delivered_at WHEN 'read' THEN m.read_at
        WHEN 'failed' THEN m.failed_at END, now()),
    'error', CASE WHEN v.label = 'failed' THEN jsonb_build_object(
        'code', m.error_code, 'category', m.error_category, 'title', m.error_detail) END
) AS payload
FROM unnest(%s::bigint[], %s::text[], %s::text[]) WITH ORDINALITY AS v(id, label, event_type, n)
JOIN {_QUEUE} m ON m.id = v.id
"""  # noqa: S608


_INSERT_MESSAGE_EVENTS = (
    f"INSERT INTO {_OUTBOX} (subscription_id, event_type, payload) "  # noqa: S608
    f"SELECT s.id, e.event_type, e.payload FROM ({_MESSAGE_SELECT}) e "
    "JOIN unnest(%s::bigint[], %s::text[]) AS s(id, event_type) "
    "ON s.event_type = e.event_type ORDER BY s.id, e.n"
)
# By queue status: its label and event type, looked up per move without building enums.
_LABELS = {int(s): OutboundStatus(s).label for s in MESSAGE_EVENTS}
_TYPES = {int(s): str(t) for s, t in MESSAGE_EVENTS.items()}


def publish_message_statuses(moves: Sequence[tuple[int, int]]) -> None:
    """(queue row id, new status) pairs just written; statuses not reported are skipped.

    Called by the sender's record step and the webhook ladder, in their transaction.
    """
    moves = [(i, s) for i, s in moves if s in MESSAGE_EVENTS]
    if not moves:
        return
    wanted: list[tuple[int, str]] = []
    for event_type in {MESSAGE_EVENTS[OutboundStatus(s)] for _, s in moves}:
        wanted.extend((sub, str(event_type)) for sub in subscribers(event_type))
    listening = outbound_event.has_listeners()
    if not wanted and not listening:
        return
    if connection.vendor != "postgresql":
        _publish_statuses_orm(moves)
        return
    ids = [i for i, _ in moves]
    labels = [_LABELS[s] for _, s in moves]
    types = [_TYPES[s] for _, s in moves]
    with prepared_cursor() as cursor:
        if wanted:
            cursor.execute(
                _INSERT_MESSAGE_EVENTS,
                [ids, labels, types, [s for s, _ in wanted], [t for _, t in wanted]],
                prepare=True,
            )
            _kick_on_commit()
        if listening:
            cursor.execute(_MESSAGE_SELECT + " ORDER BY v.n", [ids, labels, types])
            rows = cursor.fetchall()
            for _n, event_type, payload in rows:
                data = json.loads(payload) if isinstance(payload, str) else payload
                _after_commit(event_type, [data])


def _kick_on_commit() -> None:
    from messaging.integrations.events.tasks import kick_delivery

    transaction.on_commit(kick_delivery)


def _publish_statuses_orm(moves: list[tuple[int, int]]) -> None:
    """The same events built in Python (SQLite quickstart; PostgreSQL does it in one INSERT)."""
    rows = OutboundMessage.objects.in_bulk([i for i, _ in moves])
    for row_id, status in moves:
        row = rows.get(row_id)
        if row is None:
            continue
        label = OutboundStatus(status).label
        at = getattr(row, f"{label}_at", None)
        error = None
        if label == "failed":
            error = {
                "code": row.error_code,
                "category": row.error_category,
                "title": row.error_detail,
            }
        payload = {
            "message_id": row.pk,
            "campaign_id": row.campaign_id,
            "to": row.phone,
            "wamid": row.wamid,
            "status": label,
            "at": at,
            "error": error,
        }
        publish(MESSAGE_EVENTS[OutboundStatus(status)], [payload])

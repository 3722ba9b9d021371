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

from messaging.integrations.events import log as event_log
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


def _subscription_saved(instance: EventSubscription, **_: object) -> None:
    """An active subscription reads the message event log from now on; an inactive one has no
    cursor, so turning it on again starts from then (as the outbox, written only for active
    subscriptions, does)."""
    forget_subscriptions()
    if connection.vendor != "postgresql":
        return  # the SQLite quickstart writes message events to the outbox
    if instance.active:
        event_log.start(instance.pk)
    else:
        event_log.stop(instance.pk)


post_save.connect(_subscription_saved, sender=EventSubscription)
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


def _json(expression: str) -> str:
    """`expression` as JSON text, `null` when it is NULL."""
    return f"COALESCE(to_json({expression})::text, 'null')"


def message_payload_sql(*, row: str, label: str, message_id: str, at: str) -> str:
    """The `data` of a message event as JSON text: the queue row `row` (may be NULL: then
    `message_id` names it), its status `label` (one of ours: no escaping), `at` when the row
    has no time for it. The one definition of the payload, for the outbox, the event log and
    the signals. Concatenated rather than json_build_object: a third cheaper per event in
    PostgreSQL, where most of an event's delivery cost is (docs/benchmarks.md)."""
    moment = (
        f"COALESCE(CASE {label} WHEN 'accepted' THEN {row}.accepted_at "
        f"WHEN 'sent' THEN {row}.sent_at WHEN 'delivered' THEN {row}.delivered_at "
        f"WHEN 'read' THEN {row}.read_at WHEN 'failed' THEN {row}.failed_at END, {at})"
    )
    error = (
        f"CASE WHEN {label} = 'failed' THEN json_build_object('code', {row}.error_code, "
        f"'category', {row}.error_category, 'title', {row}.error_detail)::text ELSE 'null' END"
    )
    return (
        f"""('{{"message_id":' || {_json(message_id)} || ',"campaign_id":' || """
        f"""{_json(f"{row}.campaign_id")} || ',"to":' || {_json(f"{row}.phone")} || """
        f"""',"wamid":' || {_json(f"{row}.wamid")} || ',"status":"' || {label} || """
        f"""'","at":' || {_json(moment)} || ',"error":' || {error} || '}}')"""
    )


# For in-process listeners: every message event built from the queue row as just written.
_MESSAGE_SELECT = f"""
SELECT v.n, v.event_type,
    {message_payload_sql(row="m", label="v.label", message_id="m.id", at="now()")}::jsonb
FROM unnest(%s::bigint[], %s::text[], %s::text[]) WITH ORDINALITY AS v(id, label, event_type, n)
JOIN {_QUEUE} m ON m.id = v.id ORDER BY v.n
"""  # noqa: S608
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
    for event_type in {_TYPES[s] for s in {s for _, s in moves}}:
        wanted.extend((sub, event_type) for sub in subscribers(event_type))
    listening = outbound_event.has_listeners()
    if not wanted and not listening:
        return
    if connection.vendor != "postgresql":
        _publish_statuses_orm(moves)
        return
    ids = [i for i, _ in moves]
    with prepared_cursor() as cursor:
        if wanted:
            # One narrow log entry; each subscription reads it through its cursor (log.py).
            cursor.execute(event_log.WRITE, [ids, [s for _, s in moves], len(ids)], prepare=True)
            _kick_on_commit()
        if listening:
            labels = [_LABELS[s] for _, s in moves]
            types = [_TYPES[s] for _, s in moves]
            cursor.execute(_MESSAGE_SELECT, [ids, labels, types])
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

"""Send outbox rows to their subscriptions: signed, in order per subscription, retried.

Each subscription is a FIFO: its oldest pending events go first, one batch in flight at a
time (a PostgreSQL advisory lock per subscription, held by the worker's connection, so a
killed worker releases it and its batch is simply sent again: at least once). A batch's
envelopes and body are built by PostgreSQL; a delivered batch is marked in one UPDATE. A batch
that fails waits with exponential backoff and jitter; events older than
EVENTS_RETRY_HOURS become dead letters, which staff re-deliver from the admin.

Signature: `X-Wacampaigns-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
The receiver recomputes it, refuses an old `t` (replay) and de-duplicates by event id.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import urllib3
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from messaging.integrations.events import log as event_log
from messaging.integrations.events.sql import prepared_cursor
from messaging.integrations.models import EventSubscription, OutboxEvent

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Wacampaigns-Signature"
LOCK_NAMESPACE = 0x0E7E  # advisory lock space of the outbox (first key), subscription second
_OUTBOX = OutboxEvent._meta.db_table
# A keep-alive pool per subscription URL, found by the URL string: a PoolManager parses and
# normalises the URL on every POST (a fifth of the deliverer's cost per batch). Subscriptions
# are few; a URL no longer used keeps only its idle sockets.
_pools: dict[str, tuple[urllib3.HTTPConnectionPool, str]] = {}


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, tolerance: int = 300) -> bool:
    """What a receiver does (and what our tests do): check the MAC and the timestamp's age."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def retry_delay(attempts: int) -> float:
    """Exponential from EVENTS_RETRY_BASE_SECONDS, capped, with ±25 % jitter."""
    delay = settings.EVENTS_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1)
    delay = min(delay, settings.EVENTS_RETRY_MAX_SECONDS)
    return delay * random.uniform(0.75, 1.25)


@dataclass
class Result:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    skipped: bool = False
    waiting: bool = False  # skipped because the head waits for its retry (not for new events)
    retry_in: float | None = None  # after a failure: seconds until the batch is due again
    fill_in: float | None = None  # a partial batch waits this long for more events


@contextmanager
def holding(subscription_id: int) -> Iterator[bool]:
    """The subscription's advisory lock (session level) for the block: True when we have it.

    Held by the connection, not by a transaction, so a worker keeps it across its batches
    without a transaction open around each POST; a killed worker's connection closes and the
    lock goes with it (its batch in flight is sent again: at least once).
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_NAMESPACE, subscription_id])
        held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        if held:
            try:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT pg_advisory_unlock(%s, %s)", [LOCK_NAMESPACE, subscription_id]
                    )
            except DatabaseError:
                pass  # the connection is gone, and the lock with it


def deliver_subscription(subscription: EventSubscription, *, now: datetime | None = None) -> Result:
    """Send the subscription's next batch if it is due, under its lock (skipped if taken)."""
    with holding(subscription.pk) as held:
        if not held:
            return Result(skipped=True)  # another worker has it in flight
        return deliver_batch(subscription, now=now)


# A subscription's pending events in order, through outbox_pending only (here and in
# due_subscriptions). The range on
# subscription_id (instead of `=`) keeps it an ordering column of the plan, so the primary
# key cannot serve `ORDER BY id`: with statistics taken during a backlog (most rows pending)
# the planner otherwise walks the primary key through every delivered row (8 ms a batch
# against 0.3 ms in bench/events.py).
_PENDING = (
    f"FROM {_OUTBOX} WHERE subscription_id BETWEEN %s AND %s AND state = 0 AND id < %s "
    "ORDER BY subscription_id, id"
)
NO_BOUND = 2**63 - 1
# The next batch, its envelopes and body built by PostgreSQL from the stored payloads: the
# deliverer decodes and re-encodes no event in Python.
_BATCH = f"""
SELECT array_agg(id ORDER BY id), string_agg(COALESCE(NULLIF(event_key, ''), 'evt_' || id),
    ',' ORDER BY id), max(attempts), (array_agg(next_attempt_at ORDER BY id))[1],
    string_agg(json_build_object('id', COALESCE(NULLIF(event_key, ''), 'evt_' || id),
        'type', event_type, 'created_at', created_at, 'data', payload)::text, ',' ORDER BY id)
FROM (SELECT id, event_type, created_at, payload, attempts, next_attempt_at, event_key
      {_PENDING} LIMIT %s) b
"""  # noqa: S608


def deliver_batch(subscription: EventSubscription, *, now: datetime | None = None) -> Result:
    """Send the next batch if it is due and write its outcome back; the caller holds the
    subscription's lock (`holding`), which is what keeps one batch in flight per FIFO.

    Message status events come from the event log (log.py) unless the subscription has
    outbox events pending: then they join the outbox behind those, so order holds."""
    now = now or timezone.now()
    limit = max(1, subscription.max_batch)
    with prepared_cursor() as cursor:
        plan = event_log.read(cursor, subscription.pk)
        if not plan.found:
            event_log.start(subscription.pk)  # a subscription older than the log
            return _deliver_outbox(cursor, subscription, limit, now)
        if plan.retrying:
            # Retries hold the FIFO: the log's events go behind them, a message's order kept.
            picks = plan.picks(event_log.SPILL_EVENTS)
            if picks:
                with transaction.atomic():
                    event_log.spill(cursor, subscription, picks, None)
                    event_log.advance(cursor, subscription.pk, plan, picks, 0, (0, 0), None)
            return _deliver_outbox(cursor, subscription, limit, now)
        # Both streams in the order of their ids (one sequence), each batch stopping at the
        # other's next event.
        picks = plan.picks(limit, below=plan.outbox_head)
        wait = 0.0
        if picks and limit > 1:
            wait = plan.fill_wait(limit, settings.EVENTS_BATCH_WAIT_SECONDS)
        if wait:
            return Result(skipped=True, fill_in=wait)
        if picks:
            return _deliver_log(cursor, subscription, plan, picks, limit, now)
        first_entry = min((c[0] for c in plan.candidates), default=None)
        if plan.outbox_head is not None and (first_entry is None or plan.outbox_head < first_entry):
            return _deliver_outbox(cursor, subscription, limit, now, below=first_entry)
        if plan.outbox_head is not None and not plan.picks(limit):
            return _deliver_outbox(cursor, subscription, limit, now)  # the log waits on xmin
        return Result(skipped=True)


def _deliver_log(
    cursor: psycopg.Cursor[Any],
    subscription: EventSubscription,
    plan: event_log.Plan,
    picks: list[tuple[int, int]],
    limit: int,
    now: datetime,
) -> Result:
    batch = event_log.envelopes(cursor, subscription, picks, limit)
    error = None
    if batch.count:
        error = _post(subscription, batch.event_ids, batch.body)
    if error is None:
        event_log.advance(cursor, subscription.pk, plan, picks, batch.count, batch.last, limit)
        result = Result(delivered=batch.count, skipped=not batch.count)
        wait = settings.EVENTS_BATCH_WAIT_SECONDS
        if limit > 1 and wait and plan.outbox_head is None:
            result.fill_in = plan.fill_wait(limit, wait, taken=batch.count)
        return result
    # The batch moves to the outbox, due after its first backoff step; retries, dead
    # letters and re-delivery take it from there.
    result = Result(failed=batch.count, retry_in=retry_delay(1))
    with transaction.atomic():
        event_log.spill(
            cursor,
            subscription,
            picks,
            limit,
            attempts=1,
            retry_at=now + timedelta(seconds=result.retry_in or 0),
            error=error,
        )
        event_log.advance(cursor, subscription.pk, plan, picks, batch.count, batch.last, limit)
    logger.warning("events to %s failed (%s): %d retry", subscription, error, batch.count)
    return result


def _deliver_outbox(
    cursor: psycopg.Cursor[Any],
    subscription: EventSubscription,
    limit: int,
    now: datetime,
    *,
    below: int | None = None,
) -> Result:
    result = Result()
    bound = NO_BOUND if below is None else below
    cursor.execute(_BATCH, [subscription.pk, subscription.pk, bound, limit], prepare=True)
    ids, event_ids, max_attempts, head_due, events = cursor.fetchone()  # type: ignore[misc]
    if not ids or head_due > now:
        result.skipped = True  # nothing pending, or the head is waiting for its retry
        result.waiting = bool(ids)
        return result
    error = _post(subscription, event_ids, events)
    if error is None:
        cursor.execute(
            f"UPDATE {_OUTBOX} SET state = 1, delivered_at = %s, attempts = attempts + 1, "  # noqa: S608
            "last_error = '' WHERE id = ANY(%s::bigint[])",
            [now, ids],
            prepare=True,
        )
        result.delivered = len(ids)
        return result
    result.retry_in = retry_delay(max_attempts + 1)
    retry_at = now + timedelta(seconds=result.retry_in)
    give_up = now - timedelta(hours=settings.EVENTS_RETRY_HOURS)
    cursor.execute(
        f"UPDATE {_OUTBOX} SET attempts = attempts + 1, last_error = %s, "  # noqa: S608
        "state = CASE WHEN created_at < %s THEN 2 ELSE 0 END, next_attempt_at = %s "
        "WHERE id = ANY(%s::bigint[]) RETURNING state",
        [error[:300], give_up, retry_at, ids],
    )
    states = [s for (s,) in cursor.fetchall()]
    result.dead = states.count(2)
    result.failed = len(states) - result.dead
    logger.warning(
        "events to %s failed (%s): %d retry, %d dead",
        subscription,
        error,
        result.failed,
        result.dead,
    )
    return result


def _post(subscription: EventSubscription, event_ids: str, events: str) -> str | None:
    """None when the receiver took the events (2xx), else what went wrong. `events` is the
    batch's envelopes as JSON text, `event_ids` their ids, both comma-separated."""
    if subscription.max_batch <= 1:
        body = events.encode()
    else:
        body = b'{"events":[' + events.encode() + b"]}"
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "wacampaigns-events/1",
        SIGNATURE_HEADER: sign(subscription.secret, timestamp, body),
        "X-Wacampaigns-Timestamp": str(timestamp),
        "X-Wacampaigns-Event-Ids": event_ids,
    }
    try:
        pool, path = _pool(subscription.url)
        response = pool.urlopen(
            "POST",
            path,
            body=body,
            headers=headers,
            timeout=urllib3.Timeout(connect=3.0, read=settings.EVENTS_TIMEOUT_SECONDS),
            retries=False,
            redirect=False,
        )
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if 200 <= response.status < 300:
        return None
    return f"HTTP {response.status}"


def _pool(url: str) -> tuple[urllib3.HTTPConnectionPool, str]:
    found = _pools.get(url)
    if found is None:
        pool = urllib3.connection_from_url(url, maxsize=4, retries=False)
        found = _pools[url] = (pool, urllib3.util.parse_url(url).request_uri)
    return found


_DUE = (
    "SELECT s.id FROM integrations_eventsubscription s CROSS JOIN LATERAL ("  # noqa: S608
    f"SELECT next_attempt_at FROM {_OUTBOX} o "
    "WHERE o.subscription_id BETWEEN s.id AND s.id AND o.state = 0 "
    "ORDER BY o.subscription_id, o.id LIMIT 1) head WHERE head.next_attempt_at <= %s"
)


def due_subscriptions(*, now: datetime | None = None) -> list[EventSubscription]:
    """Subscriptions whose oldest pending event (the head of the FIFO) is due, or that have
    message events in the log to read."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(f"{_DUE} UNION {event_log.DUE}", [now])
        ids = [r[0] for r in cursor.fetchall()]
    return list(EventSubscription.objects.filter(pk__in=ids))


def redeliver(event_ids: list[int]) -> int:
    """Dead letters back in the queue (staff's one click), due now."""
    return OutboxEvent.objects.filter(pk__in=event_ids, state=OutboxEvent.State.DEAD).update(
        state=OutboxEvent.State.PENDING, attempts=0, next_attempt_at=timezone.now(), last_error=""
    )


def event_counts() -> tuple[int, int]:
    """(events not delivered yet: pending in the outbox and unread in the message event log,
    dead letters), in one query."""
    if connection.vendor != "postgresql":
        pending = OutboxEvent.objects.filter(state=OutboxEvent.State.PENDING).count()
        return pending, OutboxEvent.objects.filter(state=OutboxEvent.State.DEAD).count()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE state = 0) + "  # noqa: S608
            f"({event_log.BACKLOG}), count(*) FILTER (WHERE state = 2) FROM {_OUTBOX}"
        )
        pending, dead = cursor.fetchone()
    return int(pending), int(dead)


def backlog() -> int:
    """Events not delivered yet: pending in the outbox, and unread in the message event log."""
    return event_counts()[0]

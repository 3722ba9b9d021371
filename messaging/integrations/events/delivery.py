"""Send outbox rows to their subscriptions: signed, in order per subscription, retried.

Each subscription is a FIFO: its oldest pending events go first, one batch in flight at a
time (a PostgreSQL advisory lock per subscription, held by the transaction around the POST,
so a killed worker releases it and its batch is simply sent again: at least once). A batch
that fails waits with exponential backoff and jitter; events older than
EVENTS_RETRY_HOURS become dead letters, which staff re-deliver from the admin.

Signature: `X-Wacampaigns-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
The receiver recomputes it, refuses an old `t` (replay) and de-duplicates by event id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import urllib3
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from messaging.integrations.models import EventSubscription, OutboxEvent

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Wacampaigns-Signature"
LOCK_NAMESPACE = 0x0E7E  # advisory lock space of the outbox (first key), subscription second
_OUTBOX = OutboxEvent._meta.db_table
_http = urllib3.PoolManager(num_pools=32, maxsize=4, retries=False)


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


def envelope(event_id: int, event_type: str, created_at: datetime, data: object) -> dict:
    return {
        "id": f"evt_{event_id}",
        "type": event_type,
        "created_at": created_at.isoformat(),
        "data": data,
    }


@dataclass
class Result:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    skipped: bool = False
    retry_in: float | None = None  # after a failure: seconds until the batch is due again


def deliver_subscription(subscription: EventSubscription, *, now: datetime | None = None) -> Result:
    """Send the subscription's next batch if it is due; the batch's outcome is written back."""
    now = now or timezone.now()
    result = Result()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_xact_lock(%s, %s)", [LOCK_NAMESPACE, subscription.pk]
        )
        if not cursor.fetchone()[0]:
            result.skipped = True  # another worker has it in flight
            return result
        cursor.execute(
            f"SELECT id, event_type, created_at, payload, attempts, next_attempt_at "  # noqa: S608
            f"FROM {_OUTBOX} WHERE subscription_id = %s AND state = 0 ORDER BY id LIMIT %s",
            [subscription.pk, max(1, subscription.max_batch)],
        )
        rows = cursor.fetchall()
        if not rows or rows[0][5] > now:
            result.skipped = True  # nothing pending, or the head is waiting for its retry
            return result
        events = [
            envelope(r[0], r[1], r[2], json.loads(r[3]) if isinstance(r[3], str) else r[3])
            for r in rows
        ]
        ids = [r[0] for r in rows]
        error = _post(subscription, events)
        if error is None:
            cursor.execute(
                f"UPDATE {_OUTBOX} SET state = 1, delivered_at = %s, attempts = attempts + 1, "  # noqa: S608
                "last_error = '' WHERE id = ANY(%s)",
                [now, ids],
            )
            result.delivered = len(ids)
            return result
        attempts = max(r[4] for r in rows) + 1
        result.retry_in = retry_delay(attempts)
        retry_at = now + timedelta(seconds=result.retry_in)
        give_up = now - timedelta(hours=settings.EVENTS_RETRY_HOURS)
        cursor.execute(
            f"UPDATE {_OUTBOX} SET attempts = attempts + 1, last_error = %s, "  # noqa: S608
            "state = CASE WHEN created_at < %s THEN 2 ELSE 0 END, next_attempt_at = %s "
            "WHERE id = ANY(%s) RETURNING state",
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


def _post(subscription: EventSubscription, events: list[dict]) -> str | None:
    """None when the receiver took the events (2xx), else what went wrong."""
    body_obj: object = events[0] if subscription.max_batch <= 1 else {"events": events}
    body = json.dumps(body_obj, separators=(",", ":"), default=str).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "wacampaigns-events/1",
        SIGNATURE_HEADER: sign(subscription.secret, timestamp, body),
        "X-Wacampaigns-Timestamp": str(timestamp),
        "X-Wacampaigns-Event-Ids": ",".join(e["id"] for e in events),
    }
    try:
        response = _http.request(
            "POST",
            subscription.url,
            body=body,
            headers=headers,
            timeout=urllib3.Timeout(connect=3.0, read=settings.EVENTS_TIMEOUT_SECONDS),
            redirect=False,
        )
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if 200 <= response.status < 300:
        return None
    return f"HTTP {response.status}"


def due_subscriptions(*, now: datetime | None = None) -> list[EventSubscription]:
    """Subscriptions whose oldest pending event is due (served by outbox_pending)."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.id FROM integrations_eventsubscription s WHERE EXISTS ("  # noqa: S608
            f"SELECT 1 FROM {_OUTBOX} o WHERE o.subscription_id = s.id AND o.state = 0 "
            "AND o.next_attempt_at <= %s)",
            [now],
        )
        ids = [r[0] for r in cursor.fetchall()]
    return list(EventSubscription.objects.filter(pk__in=ids))


def redeliver(event_ids: list[int]) -> int:
    """Dead letters back in the queue (staff's one click), due now."""
    return OutboxEvent.objects.filter(pk__in=event_ids, state=OutboxEvent.State.DEAD).update(
        state=OutboxEvent.State.PENDING, attempts=0, next_attempt_at=timezone.now(), last_error=""
    )


def backlog() -> int:
    return OutboxEvent.objects.filter(state=OutboxEvent.State.PENDING).count()

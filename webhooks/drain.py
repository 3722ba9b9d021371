"""Store verified bodies, then apply them in the background: claim, parse, apply, mark.

The view only stores (`store_raw_event`); everything else happens here, driven by the
`drain_webhooks` task (kicked after stores, plus an every-minute Schedule) or by
`manage.py apply_webhooks`. A stored body stays pending until the transaction that applied it
commits, so a crash anywhere loses nothing: the next drain picks it up again.

PostgreSQL gets the fast SQL (SKIP LOCKED claims, unnest updates, an advisory lock); other
databases (the SQLite demo) the ORM equivalents chosen by messaging/sql_paths.py.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import psycopg
import psycopg.errors
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from messaging.sql_paths import postgres_fast_paths
from messaging.transient import TRANSIENT_ERRORS, Backoff, GaveUp, retry_transient
from webhooks.account_events import record_account_events
from webhooks.inbound import record_inbound, record_preferences
from webhooks.models import RawEvent, RejectedWebhookItem
from webhooks.payload import ParsedBody, PayloadError, RejectedItem, check_envelope, parse
from webhooks.statuses import match_unmatched_statuses, record_statuses

logger = logging.getLogger(__name__)

_RAW = RawEvent._meta.db_table
BATCH_SIZE = 1000
# How far back the drain loop looks for statuses whose queue row may have appeared since.
REMATCH_WINDOW = timedelta(days=2)
REMATCH_EVERY_SECONDS = 10.0
# Any 64-bit number unique to this lock; keeps the watchdog and kicks from piling up drainers.
DRAIN_LOCK_KEY = 0x5741_484F_4F4B


_STORE_SQL = f"INSERT INTO {_RAW} (body, received_at, error) VALUES (%b, now(), '')"  # noqa: S608


def store_raw_event(body: bytes) -> None:
    """One INSERT, committed before we answer 200 (the view runs in autocommit).

    A server-binding psycopg cursor with `prepare=True`: the statement is parsed and planned once
    per connection and the body travels as binary, which is most of the per-request database
    cost (Django's own cursors bind client-side and re-plan every time).
    """
    if not postgres_fast_paths():
        RawEvent.objects.create(body=body, error="")
        return
    if connection.in_atomic_block:  # e.g. ATOMIC_REQUESTS or a test: stay in Django's transaction
        with connection.cursor() as cursor:
            cursor.execute(_STORE_SQL.replace("%b", "%s"), [body])
        return
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(_STORE_SQL, [body], prepare=True)


def apply_parsed(parsed: ParsedBody) -> list[int]:
    """Apply every event of one or more bodies; returns new inbound ids to auto-answer."""
    if parsed.statuses:
        record_statuses(events=parsed.statuses)
    answer = record_inbound(events=parsed.inbound) if parsed.inbound else []
    if parsed.preferences:
        record_preferences(events=parsed.preferences)
    if parsed.account:
        record_account_events(events=parsed.account)
    return answer


def _parse(body: bytes) -> ParsedBody:
    return parse(check_envelope(bytes(body)))


def _apply_items(one: ParsedBody) -> list[int]:
    """Apply one body; if it fails as a whole, apply its items one by one and set aside (in
    `one.rejected`) each item that fails alone, with the database's reason."""
    try:
        with transaction.atomic():
            return apply_parsed(one)
    except OperationalError:
        raise
    except Exception:
        logger.warning("a webhook body failed as a whole; applying its items one by one")
    answer: list[int] = []
    for label, event, single in one.items():
        try:
            with transaction.atomic():
                answer += apply_parsed(single)
        except OperationalError:
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"[:500]
            one.rejected.append(RejectedItem(label, reason, dataclasses.asdict(event)))  # type: ignore[call-overload]
    return answer


def _keep_rejected(bodies: dict[int, ParsedBody]) -> dict[int, str]:
    """Store every rejected item for staff; returns each affected body's one-line summary."""
    rows = [
        RejectedWebhookItem(
            raw_event_id=raw_id,
            where=item.where[:255],
            reason=item.reason[:500],
            item=json.dumps(item.item, ensure_ascii=True, default=str),
        )
        for raw_id, one in bodies.items()
        for item in one.rejected
    ]
    RejectedWebhookItem.objects.bulk_create(rows)
    return {
        raw_id: f"{len(one.rejected)} item(s) not applied, kept as rejected webhook items; "
        f"first: {one.rejected[0].where}: {one.rejected[0].reason}"[:2000]
        for raw_id, one in bodies.items()
        if one.rejected
    }


def _apply_claimed(claimed: list[tuple[int, bytes]]) -> tuple[dict[int, str], list[int]]:
    """Apply claimed bodies together; isolate a body, then an item, that fails so it can't
    block the rest. Returns (error summary per body, new inbound ids to auto-answer)."""
    errors: dict[int, str] = {}
    parsed: dict[int, ParsedBody] = {}
    for raw_id, body in claimed:
        try:
            parsed[raw_id] = _parse(body)
        except PayloadError as exc:  # stored by an older version or by hand: keep, don't retry
            errors[raw_id] = str(exc)
    merged = ParsedBody()
    for one in parsed.values():
        merged.statuses += one.statuses
        merged.inbound += one.inbound
        merged.preferences += one.preferences
        merged.account += one.account
    try:
        with transaction.atomic():
            answer = apply_parsed(merged)
    except OperationalError:
        raise  # deadlock or lost connection: the whole batch is retried
    except Exception:
        logger.exception("batch of %d webhook bodies failed; applying one by one", len(parsed))
        answer = []
        for one in parsed.values():
            answer += _apply_items(one)
    errors.update(_keep_rejected(parsed))
    return errors, answer


def _claim(limit: int) -> list[tuple[int, bytes]]:
    """The oldest pending bodies, locked for this transaction."""
    if not postgres_fast_paths():
        # SQLite takes the database's write lock at BEGIN (transaction_mode IMMEDIATE), so one
        # drainer at a time holds what it read; elsewhere select_for_update locks the rows.
        rows = RawEvent.objects.filter(applied_at__isnull=True).order_by("id")
        claimed = rows.select_for_update().values_list("id", "body")[:limit]
        return [(pk, bytes(body)) for pk, body in claimed]  # a BinaryField may be a memoryview
    with connection.cursor() as cursor:
        # Served by rawevent_pending; SKIP LOCKED lets concurrent drainers share the backlog.
        cursor.execute(
            f"SELECT id, body FROM {_RAW} WHERE applied_at IS NULL "  # noqa: S608
            "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            [limit],
        )
        return cursor.fetchall()


def _mark_applied(ids: list[int], errors: dict[int, str]) -> None:
    if not postgres_fast_paths():
        now = timezone.now()
        clean = [i for i in ids if i not in errors]
        RawEvent.objects.filter(pk__in=clean).update(applied_at=now, error="")
        for raw_id, error in errors.items():
            RawEvent.objects.filter(pk=raw_id).update(applied_at=now, error=error)
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_RAW} r SET applied_at = now(), error = v.error "  # noqa: S608
            "FROM unnest(%s::bigint[], %s::text[]) AS v(id, error) WHERE r.id = v.id",
            [ids, [errors.get(i, "") for i in ids]],
        )


def _apply_batch_once(limit: int) -> int:
    with transaction.atomic():
        claimed = _claim(limit)
        if not claimed:
            return 0
        errors, answer = _apply_claimed(claimed)
        _mark_applied([raw_id for raw_id, _ in claimed], errors)
        if answer and settings.AUTO_REPLY_ENABLED:
            transaction.on_commit(lambda: _enqueue_auto_replies(answer))
    for raw_id, error in errors.items():
        logger.warning("webhook body %s kept with error: %s", raw_id, error)
    return len(claimed)


def _enqueue_auto_replies(inbound_ids: list[int]) -> None:
    from django_q.tasks import async_task

    for inbound_id in inbound_ids:
        async_task("webhooks.tasks.auto_reply", inbound_id)


def _retryable(exc: OperationalError) -> bool:
    return isinstance(
        exc.__cause__, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure
    )


def apply_batch(*, limit: int = BATCH_SIZE) -> int:
    """Claim up to `limit` pending bodies and apply them in one transaction; returns how many."""
    for attempt in range(1, 4):
        try:
            return _apply_batch_once(limit)
        except OperationalError as exc:
            if attempt == 3 or not _retryable(exc):
                raise
            logger.warning("webhook batch retried after %s (attempt %d)", exc.__cause__, attempt)
    return 0  # unreachable


def pending_exists() -> bool:
    return RawEvent.objects.filter(applied_at__isnull=True).exists()


def drain(
    *,
    until_empty: bool = True,
    max_seconds: float | None = None,
    batch_size: int = BATCH_SIZE,
    idle_sleep: float = 0.2,
    stop: Callable[[], bool] | None = None,
) -> int:
    """Apply pending bodies batch after batch; returns how many bodies were applied.

    `until_empty` returns at the first empty claim; otherwise it polls until `max_seconds`
    (or `stop()` returns true). Unmatched statuses are retried every few seconds.
    """
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    total, last_rematch = 0, float("-inf")
    backoff = Backoff("webhook drain")
    while True:
        # A lost database connection is waited out (what a failed batch held was rolled back).
        try:
            applied = retry_transient(
                lambda: apply_batch(limit=batch_size), backoff=backoff, stop=stop, deadline=deadline
            )
        except GaveUp:
            break
        total += applied
        now = time.monotonic()
        if now - last_rematch > (1.0 if applied == 0 else REMATCH_EVERY_SECONDS):
            since = timezone.now() - REMATCH_WINDOW
            try:
                retry_transient(
                    functools.partial(match_unmatched_statuses, since=since),
                    backoff=backoff,
                    stop=stop,
                    deadline=deadline,
                )
            except GaveUp:
                break
            last_rematch = now
        if deadline is not None and now >= deadline:
            break
        if callable(stop) and stop():
            break
        if applied == 0:
            if until_empty:
                break
            time.sleep(idle_sleep)
    return total


# Without PostgreSQL's advisory locks (the SQLite demo, one process), a lock per process.
_LOCAL_DRAIN_LOCK = threading.Lock()


def _try_lock_drain() -> bool:
    if not postgres_fast_paths():
        return _LOCAL_DRAIN_LOCK.acquire(blocking=False)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [DRAIN_LOCK_KEY])
        return bool(cursor.fetchone()[0])


def _unlock_drain() -> None:
    if not postgres_fast_paths():
        _LOCAL_DRAIN_LOCK.release()
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [DRAIN_LOCK_KEY])
    except TRANSIENT_ERRORS:
        connection.close()  # the session (and the lock with it) is gone already


def try_drain_exclusively(*, max_seconds: float) -> int | None:
    """Drain unless another process already is (a session advisory lock); None if skipped.

    The lock only saves work: correctness comes from row claims. A dead process's lock goes
    with its connection, and so does ours if the database restarts meanwhile.
    """
    total, deadline = 0, time.monotonic() + max_seconds
    backoff = Backoff("webhook drain lock")
    while True:
        try:
            locked = retry_transient(_try_lock_drain, backoff=backoff, deadline=deadline)
        except GaveUp:
            locked = False
        if not locked:
            return None if total == 0 else total
        try:
            total += drain(until_empty=True, max_seconds=max(deadline - time.monotonic(), 0))
        finally:
            _unlock_drain()
        # A body stored while we held the lock had its kick refused: look once more.
        if time.monotonic() >= deadline:
            return total
        try:
            if not retry_transient(pending_exists, backoff=backoff, deadline=deadline):
                return total
        except GaveUp:
            return total

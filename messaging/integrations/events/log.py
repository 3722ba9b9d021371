"""Message status events read from the event log, per subscription, in order, exactly as written.

The writers (the sender's record step, the webhook ladder) add one narrow `MessageEventLog`
row per transaction: queue row ids and their new statuses, tagged with the transaction's id.
Each subscription reads the log through its `EventLogCursor`; PostgreSQL builds the envelopes
from the queue rows at delivery, so a status event costs the writer a few bytes and no row
per subscription (the outbox's cost per event was the whole CPU budget; docs/benchmarks.md).

Why a cursor of transaction ids and not of entry ids: ids are taken in one order and
committed in another, so "id > last" would skip an entry whose transaction committed after a
later id was read. An entry written by transaction X can only appear while X runs, and X runs
only if X >= the snapshot's xmin (the oldest transaction still running). So:

- entries are delivered in id order (for one message, that is the order of its changes: a
  later change waits for the earlier one's row lock, so its entry takes a later id);
- a reader stops at the first entry, in id order, whose xid is not below xmin: an older
  transaction still running may yet write a later change of the same message, with a later
  id but an older xid, and the stop keeps that change behind this entry;
- the cursor's `xid` moves up to the oldest xid not yet delivered (at most xmin); entries
  delivered above it are listed in `done` (a few, or none when no transaction overlaps).

The price: a long writing transaction anywhere in the cluster holds message events back
until it ends (they come late, never lost; docs/integrations.md). A POST that fails moves its
events into the outbox with their ids (`OutboxEvent.event_key`), where retries and the dead
letter list work as for every other event; while a subscription has outbox events pending,
its log events follow them into the outbox, so a message's order holds across the move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from django.db import connection

from messaging.integrations.models import (
    EventLogCursor,
    EventSubscription,
    MessageEventLog,
    OutboxEvent,
)
from messaging.models import OutboundMessage

_LOG = MessageEventLog._meta.db_table
_CURSOR = EventLogCursor._meta.db_table
_OUTBOX = OutboxEvent._meta.db_table
_QUEUE = OutboundMessage._meta.db_table
XMIN = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
# Events moved into the outbox per turn while it has events pending (one transaction).
SPILL_EVENTS = 5000
# Log entries looked at per read (each holds one transaction's moves, up to a few hundred).
CANDIDATES = 200

# Entry ids come from the outbox's sequence: one order of writing for both, so a subscription
# gets a campaign's events and its messages' events in the order they were written (a
# campaign's `expired` after its rows' `expired`).
WRITE = (
    f"INSERT INTO {_LOG} (id, xid, ids, statuses, size) "  # noqa: S608
    f"VALUES (nextval(pg_get_serial_sequence('{_OUTBOX}', 'id')), "
    "pg_current_xact_id()::text::bigint, %s, %s, %s)"
)

_START = (
    f"INSERT INTO {_CURSOR} (subscription_id, xid, done, head, head_pos) "  # noqa: S608
    f"VALUES (%s, {XMIN}, '{{}}', 0, 0) ON CONFLICT DO NOTHING"
)

# The cursor, the snapshot's xmin, the id of the subscription's oldest pending outbox event,
# whether any pending one has failed or came from the log (through outbox_pending, as
# delivery.py reads it), and the next entries not yet delivered.
_PENDING_OUTBOX = (
    f"FROM {_OUTBOX} o WHERE o.subscription_id BETWEEN c.subscription_id AND c.subscription_id "
    "AND o.state = 0"
)
_READ = f"""
SELECT {XMIN}, c.xid, COALESCE(c.done, '{{}}'), c.head, c.head_pos,
    (SELECT o.id {_PENDING_OUTBOX} ORDER BY o.subscription_id, o.id LIMIT 1),
    EXISTS (SELECT 1 {_PENDING_OUTBOX} AND (o.attempts > 0 OR o.event_key <> '')),
    ARRAY(SELECT ARRAY[l.id, l.xid, l.size,
                       (extract(epoch FROM clock_timestamp() - l.created_at) * 1000)::bigint]
          FROM {_LOG} l
          WHERE l.xid >= c.xid AND l.id <> ALL(COALESCE(c.done, '{{}}'))
          ORDER BY l.id = c.head DESC, l.id LIMIT %s)
FROM {_CURSOR} c WHERE c.subscription_id = %s
"""  # noqa: S608

# The picked entries' events (after each entry's start position) of the wanted statuses, in
# entry order then position order, at most `limit`; `e` has the entry's time and the label.
_PICKED = f"""
SELECT k.ord, l.id AS entry, l.created_at, u.pos, u.mid, t.label, t.event_type
FROM unnest(%s::bigint[], %s::int[]) WITH ORDINALITY AS k(entry, from_pos, ord)
JOIN {_LOG} l ON l.id = k.entry
CROSS JOIN LATERAL unnest(l.ids, l.statuses) WITH ORDINALITY AS u(mid, st, pos)
JOIN unnest(%s::smallint[], %s::text[], %s::text[]) AS t(st, label, event_type) ON t.st = u.st
WHERE u.pos > k.from_pos ORDER BY k.ord, u.pos LIMIT %s
"""  # noqa: S608
_EVENT_ID = "'evt_m' || e.entry || '_' || e.pos"

# Moves the cursor past what was delivered: its xid up to the oldest entry not delivered
# (never past xmin), `done` down to the delivered entries at or above it.
_ADVANCE = f"""
UPDATE {_CURSOR} c SET xid = d.h, done = d.done, head = %s, head_pos = %s
FROM (SELECT h.h, ARRAY(SELECT l.id FROM {_LOG} l WHERE l.id = ANY(x.done) AND l.xid >= h.h
                        ORDER BY l.id) AS done
      FROM (SELECT %s::bigint[] AS done) x,
      LATERAL (SELECT LEAST(%s::bigint, (SELECT min(l.xid) FROM {_LOG} l
               WHERE l.xid >= %s AND l.id <> ALL(x.done))) AS h) h) d
WHERE c.subscription_id = %s
"""  # noqa: S608

# Subscriptions with log entries ready to read (for delivery.due_subscriptions).
DUE = f"""
SELECT c.subscription_id FROM {_CURSOR} c
JOIN integrations_eventsubscription s ON s.id = c.subscription_id AND s.active
WHERE EXISTS (SELECT 1 FROM {_LOG} l WHERE l.xid >= c.xid AND l.xid < {XMIN}
              AND l.id <> ALL(COALESCE(c.done, '{{}}')))
"""  # noqa: S608

# Log events the active subscriptions have not read yet (an upper bound: whole entries
# counted, every status in them); a scalar query, for delivery.event_counts.
BACKLOG = f"""
SELECT COALESCE(sum(l.size), 0) FROM {_CURSOR} c
JOIN integrations_eventsubscription s ON s.id = c.subscription_id AND s.active
JOIN {_LOG} l ON l.xid >= c.xid AND l.id <> ALL(COALESCE(c.done, '{{}}'))
"""  # noqa: S608


@dataclass
class Plan:
    """One read of a subscription's cursor: what is delivered, what may go next."""

    xmin: int = 0
    xid: int = 0
    done: list[int] = field(default_factory=list)
    head: int = 0
    head_pos: int = 0
    outbox_head: int | None = None  # the oldest pending outbox event's id
    retrying: bool = False  # the outbox has failed events, or events moved from the log
    # [id, xid, size, age in ms] by id
    candidates: list[list[int]] = field(default_factory=list)
    found: bool = False  # the subscription has a cursor

    @property
    def sizes(self) -> dict[int, int]:
        """Each candidate entry's number of events, by entry id."""
        return {c[0]: c[2] for c in self.candidates}

    def picks(self, limit: int, *, below: int | None = None) -> list[tuple[int, int]]:
        """(entry, start position) to read next, at least `limit` events' worth if ready.

        A partly delivered entry goes first: every entry with a lower id not yet delivered
        was still running when it was read, so the two share no message (see the module's
        docstring) and their order is free. The rest go by id, up to the first entry whose
        transaction is not below xmin (and before the first entry not below `below`)."""
        picks: list[tuple[int, int]] = []
        total = 0
        for entry, xid, size, _age in self.candidates:  # the head first (_READ's order)
            if xid >= self.xmin:
                break
            if below is not None and entry >= below and entry != self.head:
                break  # (a partly delivered entry finishes first: it has begun)
            start = self.head_pos if entry == self.head else 0
            picks.append((entry, start))
            total += size - start
            if total >= limit:
                break
        return picks

    def fill_wait(self, limit: int, wait_seconds: float, *, taken: int = 0) -> float:
        """Seconds until the next batch is worth reading, once the first `taken` ready events
        have gone: 0 when a whole batch is ready, else until the oldest event left is
        `wait_seconds` old (the whole wait when none is left). A steady stream then goes in
        full batches, each costing one POST and three statements whatever its size; after a
        batch the answer comes from this plan instead of another read."""
        sizes = self.sizes
        ages = {c[0]: c[3] for c in self.candidates}
        ready = self.picks(2**31)
        left = seen = oldest = 0
        for entry, start in ready:
            events = sizes[entry] - start
            if seen + events > taken:
                left += min(events, seen + events - taken)
                oldest = max(oldest, ages[entry])
            seen += events
        more_unread = len(self.candidates) == CANDIDATES and len(ready) == CANDIDATES
        if left >= limit or more_unread:
            return 0.0
        if not left:
            # After a batch: wait for new events. Before one: picked entries without events
            # left (every status in them not wanted) go at once, so the cursor passes them.
            return wait_seconds if taken else 0.0
        return max(0.0, wait_seconds - oldest / 1000)


def start(subscription_id: int) -> None:
    """A new (or re-activated) subscription reads from now on, not the log's past."""
    with connection.cursor() as cursor:
        cursor.execute(_START, [subscription_id])


def stop(subscription_id: int) -> None:
    EventLogCursor.objects.filter(subscription_id=subscription_id).delete()


def read(cursor: psycopg.Cursor[Any], subscription_id: int) -> Plan:
    cursor.execute(_READ, [CANDIDATES, subscription_id], prepare=True)
    row = cursor.fetchone()
    if row is None:
        return Plan()
    xmin, xid, done, head, head_pos, outbox_head, retrying, candidates = row
    return Plan(xmin, xid, list(done), head, head_pos, outbox_head, retrying, candidates, True)


def wanted(subscription: EventSubscription) -> tuple[list[int], list[str], list[str]]:
    """The queue statuses this subscription gets events of: statuses, labels, event types."""
    from messaging.integrations.events.publish import MESSAGE_EVENTS

    chosen = [(int(s), s.label, str(t)) for s, t in MESSAGE_EVENTS.items() if subscription.wants(t)]
    return [c[0] for c in chosen], [c[1] for c in chosen], [c[2] for c in chosen]


def _picked_params(
    subscription: EventSubscription, picks: list[tuple[int, int]], limit: int | None
) -> list[Any]:
    statuses, labels, types = wanted(subscription)
    return [[p[0] for p in picks], [p[1] for p in picks], statuses, labels, types, limit]


@dataclass
class Batch:
    """The next events to POST, as PostgreSQL built them."""

    count: int
    last: tuple[int, int]  # (entry, position) of its last event
    event_ids: str  # comma-separated
    body: str  # the envelopes as JSON, comma-separated


def envelopes(
    cursor: psycopg.Cursor[Any],
    subscription: EventSubscription,
    picks: list[tuple[int, int]],
    limit: int,
) -> Batch:
    """The next batch's envelopes, built and joined by PostgreSQL (one row back: the
    deliverer decodes no event)."""
    from messaging.integrations.events.publish import message_payload_sql

    payload = message_payload_sql(row="m", label="e.label", message_id="e.mid", at="e.created_at")
    cursor.execute(
        "SELECT count(*), (array_agg(b.entry ORDER BY b.ord DESC, b.pos DESC))[1], "  # noqa: S608
        "(array_agg(b.pos ORDER BY b.ord DESC, b.pos DESC))[1], "
        "string_agg(b.event_id, ',' ORDER BY b.ord, b.pos), "
        "string_agg(b.envelope, ',' ORDER BY b.ord, b.pos) "
        f"FROM (SELECT e.ord, e.entry, e.pos, {_EVENT_ID} AS event_id, "
        f"""'{{"id":"' || {_EVENT_ID} || '","type":"' || e.event_type || """
        f"""'","created_at":' || to_json(e.created_at) || ',"data":' || {payload} || '}}' """
        f"AS envelope FROM ({_PICKED}) e LEFT JOIN {_QUEUE} m ON m.id = e.mid) b",
        _picked_params(subscription, picks, limit),
        prepare=True,
    )
    count, entry, pos, event_ids, body = cursor.fetchone()  # type: ignore[misc]
    return Batch(count, (entry or 0, pos or 0), event_ids or "", body or "")


def spill(
    cursor: psycopg.Cursor[Any],
    subscription: EventSubscription,
    picks: list[tuple[int, int]],
    limit: int | None,
    *,
    attempts: int = 0,
    retry_at: datetime | None = None,
    error: str = "",
) -> int:
    """The picked events into the subscription's outbox, in order, with their event ids;
    the caller moves the cursor in the same transaction."""
    from messaging.integrations.events.publish import message_payload_sql

    payload = message_payload_sql(row="m", label="e.label", message_id="e.mid", at="e.created_at")
    cursor.execute(
        f"INSERT INTO {_OUTBOX} (subscription_id, event_type, payload, created_at, "  # noqa: S608
        "event_key, attempts, next_attempt_at, last_error) "
        f"SELECT %s, e.event_type, ({payload})::jsonb, e.created_at, {_EVENT_ID}, %s, "
        f"COALESCE(%s, now()), %s FROM ({_PICKED}) e LEFT JOIN {_QUEUE} m ON m.id = e.mid "
        "ORDER BY e.ord, e.pos",
        [
            subscription.pk,
            attempts,
            retry_at,
            error[:300],
            *_picked_params(subscription, picks, limit),
        ],
    )
    return cursor.rowcount


def advance(
    cursor: psycopg.Cursor[Any],
    subscription_id: int,
    plan: Plan,
    picks: list[tuple[int, int]],
    taken: int,
    last: tuple[int, int],
    limit: int | None,
) -> None:
    """Record as delivered the picked events up to `last` (entry, position), `taken` in all."""
    done = list(plan.done)
    head, head_pos = plan.head, plan.head_pos
    all_taken = limit is None or taken < limit  # a short batch took every picked event
    last_entry, last_pos = last
    sizes = plan.sizes
    for entry, _start in picks:
        if not all_taken and entry == last_entry and last_pos < sizes.get(entry, 0):
            head, head_pos = entry, last_pos  # the batch ended inside this entry
            break
        done.append(entry)
        if entry == head:
            head, head_pos = 0, 0
    cursor.execute(
        _ADVANCE, [head, head_pos, done, plan.xmin, plan.xid, subscription_id], prepare=True
    )

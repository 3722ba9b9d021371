"""The status ladder: one locked queue row moved per status, then moves and counters written."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field, fields
from datetime import datetime

from django.db import connection
from django.db.models import F
from django.utils import timezone

from campaigns.models import Campaign, Contact
from messaging import minutes
from messaging.errors import classify
from messaging.evidence import HELD_FOR_EVIDENCE, SETTLED_DETAIL, note_statuses
from messaging.integrations.events.publish import publish_message_statuses
from messaging.models import OutboundMessage, OutboundStatus
from messaging.policy import breaker
from messaging.policy.actions import Effects, Target, apply_effects, judge
from messaging.policy.breaker import Sample
from messaging.policy.gate import deadline
from messaging.sql_paths import postgres_fast_paths
from webhooks.models import StatusLog
from webhooks.statuses import portable

S = OutboundStatus

LADDER = {"sent": S.SENT, "delivered": S.DELIVERED, "read": S.READ, "failed": S.FAILED}
# Rows a status may move: the sender's in-doubt states (the webhook settles them) and the ladder.
MOVABLE = (S.SENDING, S.UNKNOWN, S.ACCEPTED, S.SENT, S.DELIVERED)

_OUT = OutboundMessage._meta.db_table
_LOG = StatusLog._meta.db_table
_CONTACT = Contact._meta.db_table


@dataclass
class LogRow:
    id: int
    wamid: str
    status: str
    timestamp: datetime
    callback_data: str
    recipient_id: str
    error_code: int | None
    error_title: str


@dataclass
class Row:
    """The columns of a locked queue row that a status may change."""

    id: int
    campaign_id: int
    contact_id: int
    sender_id: int
    template_id: int
    phone: str
    valid_until: datetime | None  # read only: the row's own validity
    status: int
    attempts: int
    wamid: str | None
    next_attempt_at: datetime
    claimed_at: datetime | None
    claimed_by: str
    error_code: int | None
    error_category: str
    error_detail: str
    accepted_at: datetime | None
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    failed_at: datetime | None
    changed: bool = False
    # Every rung this apply moved the row across, in order (accepted, sent, delivered, read,
    # failed): each is one outbound event, so a batch holding sent, delivered and read of one
    # message reports all three, and a read that skipped delivered reports delivered first.
    moves: list[int] = field(default_factory=list)
    # The counted timestamps as locked, so the per-minute counts move by what changed.
    locked_times: tuple[datetime | None, ...] = ()

    def __post_init__(self) -> None:
        self.locked_times = self.counted_times()

    def counted_times(self) -> tuple[datetime | None, ...]:
        return tuple(getattr(self, name) for name in minutes.ROW_TIMESTAMPS)


_ROW_COLUMNS = [f.name for f in fields(Row) if f.name not in ("changed", "moves", "locked_times")]
_WRITE_COLUMNS = _ROW_COLUMNS[_ROW_COLUMNS.index("status") :]  # everything from status on
_PG_TYPES = {
    "id": "bigint",
    "status": "smallint",
    "attempts": "smallint",
    "wamid": "text",
    "next_attempt_at": "timestamptz",
    "claimed_at": "timestamptz",
    "claimed_by": "text",
    "error_code": "integer",
    "error_category": "text",
    "error_detail": "text",
}


@dataclass
class Outcome:
    """What one apply did; counters per campaign are applied from `counts`."""

    logged: int = 0
    matched: int = 0
    moved: int = 0
    counts: dict[int, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    effects: Effects = field(default_factory=Effects)
    wa_ids: dict[int, str] = field(default_factory=dict)
    # What the circuit breaker hears of (policy.breaker.observe).
    samples: list[Sample] = field(default_factory=list)
    # Sender number -> the latest time by which one of its messages that got a status here
    # had been sent: the evidence that its webhooks arrive (messaging.evidence).
    evidence: dict[int, datetime] = field(default_factory=dict)


def _json(rows: list[dict[str, object]]) -> str:
    # One text parameter read by json_to_recordset: far cheaper to bind than a dozen arrays.
    return json.dumps(rows, default=str, separators=(",", ":"))


def _step(row: Row, log: LogRow, outcome: Outcome, valid_until: dict[int, datetime | None]) -> None:
    """Move one locked row for one status; count only what actually moved."""
    new, old = LADDER.get(log.status), row.status
    if new is not None:
        _note_evidence(row, outcome)
    if new is None or old not in MOVABLE:
        return  # "played", or a row already final, requeued or held
    counts = outcome.counts[row.campaign_id]
    ts = log.timestamp
    if new == S.FAILED:
        if old >= S.DELIVERED:
            return
        _fail(row, log, outcome, counts, valid_until)
        return
    if new <= old:
        return
    if old < S.ACCEPTED:
        counts["sent"] += 1
        row.accepted_at = row.accepted_at or ts
        row.moves.append(S.ACCEPTED)
        outcome.samples.append(Sample(row.campaign_id))  # a send in doubt went through
        if row.error_category == HELD_FOR_EVIDENCE:
            row.error_category, row.error_detail = "", SETTLED_DETAIL
    row.sent_at = row.sent_at or ts
    if old < S.SENT:
        row.moves.append(S.SENT)
    if new >= S.DELIVERED > old:
        counts["delivered"] += 1
        row.delivered_at = row.delivered_at or ts
        row.moves.append(S.DELIVERED)
    if new == S.READ:
        counts["read"] += 1
        row.read_at = row.read_at or ts
        row.moves.append(S.READ)
    row.status = new
    row.changed = True
    outcome.moved += 1


def _note_evidence(row: Row, outcome: Outcome) -> None:
    """A status for a message of this number: its webhooks arrive for messages we sent by
    then (ours: when the answer was recorded, or when it was claimed if the webhook came
    first). An in-doubt row's own status proves nothing about messages sent after it."""
    if row.status >= S.ACCEPTED:
        sent_by = row.accepted_at
    elif row.status == S.SENDING:
        sent_by = row.claimed_at
    else:
        return
    if sent_by is None:
        return
    seen = outcome.evidence.get(row.sender_id)
    if seen is None or seen < sent_by:
        outcome.evidence[row.sender_id] = sent_by


def _fail(
    row: Row,
    log: LogRow,
    outcome: Outcome,
    counts: dict[str, int],
    valid_until: dict[int, datetime | None],
) -> None:
    rule = classify(log.error_code)
    # A row the API had accepted was counted a success: this failure takes its place.
    if log.error_code is not None:
        outcome.samples.append(
            Sample(row.campaign_id, log.error_code, replaces_success=row.status >= S.ACCEPTED)
        )
    row.error_code = log.error_code
    row.error_category = str(rule.category)
    row.error_detail = (log.error_title or rule.description)[:500]
    row.changed = True
    outcome.moved += 1
    verdict = judge(
        rule,
        code=log.error_code,
        attempts=row.attempts,
        valid_until=deadline(valid_until.get(row.campaign_id), row.valid_until),
        target=Target(row.campaign_id, row.sender_id, row.template_id, row.phone),
        effects=outcome.effects,
    )
    row.attempts = verdict.attempts
    if verdict.status == S.RETRY:
        # Back in the queue: the message did not reach the user, so it leaves `sent` until
        # the sender has it accepted again (and counts it again).
        if row.status >= S.ACCEPTED:
            counts["sent"] -= 1
        row.status = S.RETRY
        row.next_attempt_at = verdict.next_attempt_at or timezone.now()
        row.claimed_at, row.claimed_by = None, ""
        # The old wamid is dead; late statuses for it must not move the resent row.
        row.wamid = None
        row.accepted_at = row.sent_at = None
        return
    if row.status < S.ACCEPTED:
        counts["sent"] += 1  # a status exists, so the API took it
        row.accepted_at = row.accepted_at or log.timestamp
        row.moves.append(S.ACCEPTED)
    counts["failed"] += 1
    row.status = S.FAILED
    row.failed_at = log.timestamp
    row.moves.append(S.FAILED)


def _write(rows: dict[int, Row], links: list[tuple[int, int]], outcome: Outcome) -> None:
    changed = [r for r in rows.values() if r.changed]
    if not postgres_fast_paths():
        cols = ["id", *_WRITE_COLUMNS]
        portable.write([{c: getattr(r, c) for c in cols} for r in changed], links, outcome.wa_ids)
    else:
        _write_postgres(changed, links, outcome)
    # Outbound events for the moves, in this transaction (integrations outbox): one per rung
    # crossed, not one per row, so no intermediate status of a batch is lost.
    publish_message_statuses([(r.id, s) for r in changed for s in r.moves])
    _count_and_act(outcome, changed)


def _write_postgres(changed: list[Row], links: list[tuple[int, int]], outcome: Outcome) -> None:
    with connection.cursor() as cursor:
        if changed:
            # One UPDATE for the batch (docs/engine-notes.md §2: bulk_update is ~16× slower).
            cols = ["id", *_WRITE_COLUMNS]
            types = ", ".join(f"{c} {_PG_TYPES.get(c, 'timestamptz')}" for c in cols)
            cursor.execute(
                f"UPDATE {_OUT} o SET "  # noqa: S608
                + ", ".join(f"{c} = v.{c}" for c in _WRITE_COLUMNS)
                + f" FROM json_to_recordset(%s::json) AS v({types}) WHERE o.id = v.id",
                [_json([{c: getattr(r, c) for c in cols} for r in changed])],
            )
        if links:
            cursor.execute(
                f"UPDATE {_LOG} l SET outbound_id = v.oid "  # noqa: S608
                "FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, oid) WHERE l.id = v.id",
                [[a for a, _ in links], [b for _, b in links]],
            )
    if outcome.wa_ids:
        # Remember the WhatsApp id where it differs from the E.164 (Brazil, Mexico…).
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {_CONTACT} c SET wa_id = v.wa_id "  # noqa: S608
                "FROM unnest(%s::bigint[], %s::text[]) AS v(id, wa_id) "
                "WHERE c.id = v.id AND c.wa_id <> v.wa_id",
                [list(outcome.wa_ids), list(outcome.wa_ids.values())],
            )


def _count_and_act(outcome: Outcome, changed: list[Row]) -> None:
    """Counters moved by exactly what moved, the per-minute counts after them (the lock
    order every writer keeps, messaging.minutes), then the effects the error codes ask for."""
    for campaign_id in sorted(outcome.counts):
        delta = {k: v for k, v in outcome.counts[campaign_id].items() if v}
        if delta:
            Campaign.objects.filter(pk=campaign_id).update(
                **{k: F(k) + v for k, v in delta.items()}
            )
    deltas = minutes.Deltas()
    for row in changed:
        deltas.move_row(row.campaign_id, row.locked_times, row.counted_times())
    minutes.write(deltas)
    breaker.observe(outcome.samples, outcome.effects, moved=outcome.counts)
    note_statuses(outcome.evidence)
    if outcome.effects:
        apply_effects(outcome.effects)

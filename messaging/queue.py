"""The queue's SQL: claim due rows, write outcomes back, recover leases (reconciling unknowns:
messaging.evidence).

On PostgreSQL each step is one statement whatever the batch size (docs/engine-notes.md §2:
a MATERIALIZED CTE with FOR UPDATE SKIP LOCKED to claim; UPDATE … FROM unnest(arrays) to write,
with the campaign counters moved in the same statement). SQLite (single-process quickstart)
gets plain ORM equivalents.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from campaigns.models import Campaign, Contact
from messaging import minutes
from messaging.integrations.events.publish import publish_message_statuses
from messaging.models import OutboundMessage, OutboundStatus

TABLE = OutboundMessage._meta.db_table
CAMPAIGNS = Campaign._meta.db_table
S = OutboundStatus


@dataclass(slots=True)
class ClaimedMessage:
    id: int
    campaign_id: int
    template_id: int | None  # None: a free-form text row
    phone: str
    parameters: list
    attempts: int
    previous_status: int
    # The row's own validity (an API send's ttl); the campaign's is in the gate's rules.
    valid_until: datetime | None = None
    # The contact's `timezone` attribute, read only for campaigns with a sending window.
    timezone: str | None = None
    # The worker's monotonic clock before the claim began (the row's claimed_at is no earlier):
    # the sender starts no send once the lease could run out before its answer is in.
    claim_started: float = 0.0
    # Its campaign's priority, set by the sender at the claim: its lane in hand (lanes.Lanes).
    priority: int = 0


@dataclass(slots=True)
class RowOutcome:
    id: int
    status: int
    attempts: int
    next_attempt_at: datetime | None = None
    wamid: str | None = None
    error_code: int | None = None
    error_category: str = ""
    error_detail: str = ""


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


_CLAIM_SQL = f"""
WITH due AS MATERIALIZED (
    SELECT id FROM {TABLE}
    WHERE campaign_id = %s AND status = %s AND next_attempt_at <= %s
    ORDER BY next_attempt_at, id
    LIMIT %s
    FOR UPDATE SKIP LOCKED
)
UPDATE {TABLE} AS m
SET status = {S.SENDING}, claimed_at = %s, claimed_by = %s, attempts = m.attempts + 1
FROM due WHERE m.id = due.id
RETURNING m.id, m.campaign_id, m.template_id, m.phone, m.parameters, m.attempts, %s,
    m.valid_until
"""  # noqa: S608
# The same, with the contact's time zone attribute (one primary-key probe per row).
_CONTACTS = Contact._meta.db_table
_TZ_COLUMN = f", (SELECT c.attributes->>'timezone' FROM {_CONTACTS} c WHERE c.id = m.contact_id)"  # noqa: S608
_CLAIM_TZ_SQL = _CLAIM_SQL.rstrip() + _TZ_COLUMN + "\n"


class Screen(Protocol):
    """The send policy's check of a claimed batch (messaging.policy.gate.screen)."""

    def __call__(
        self, rows: list[ClaimedMessage]
    ) -> tuple[list[ClaimedMessage], list[RowOutcome]]: ...


def claim_due(
    *,
    campaign_id: int,
    limit: int,
    worker: str,
    retries: bool = True,
    now: datetime | None = None,
    screen: Screen | None = None,
    with_timezone: bool = False,
) -> list[ClaimedMessage]:
    """Claim up to `limit` due rows of a campaign: retries that are due first, then queued.

    One statement per status: a single ORDER BY over both would sort every due row instead of
    reading the partial index in order. `screen` (the send policy) sees the claimed rows in the
    same transaction; the rows it holds back are written back before anyone sees them.
    """
    now = now or timezone.now()
    claimed: list[ClaimedMessage] = []
    with transaction.atomic():
        for status in (S.RETRY, S.QUEUED) if retries else (S.QUEUED,):
            want = limit - len(claimed)
            if want <= 0:
                break
            if _is_postgres():
                sql = _CLAIM_TZ_SQL if with_timezone else _CLAIM_SQL
                with connection.cursor() as cursor:
                    cursor.execute(sql, [campaign_id, status, now, want, now, worker, int(status)])
                    rows = cursor.fetchall()
                # `parameters` come back parsed: the column is json, which psycopg loads
                # (jsonb it would give as text, as Django has it: the payload would then
                # carry the components as a string, which the API refuses).
                claimed.extend(ClaimedMessage(*row) for row in rows)
            else:
                claimed.extend(_claim_orm(campaign_id, status, now, want, worker))
        claimed.sort(key=lambda m: m.id)
        if screen is not None and claimed:
            claimed, held = screen(claimed)
            record_outcomes(held, from_statuses=(S.SENDING,), now=now)
    return claimed


def _claim_orm(
    campaign_id: int, status: int, now: datetime, want: int, worker: str
) -> list[ClaimedMessage]:
    ids = list(
        OutboundMessage.objects.filter(
            campaign_id=campaign_id, status=status, next_attempt_at__lte=now
        )
        .order_by("next_attempt_at", "id")
        .values_list("id", flat=True)[:want]
    )
    OutboundMessage.objects.filter(id__in=ids, status=status).update(
        status=S.SENDING, claimed_at=now, claimed_by=worker, attempts=F("attempts") + 1
    )
    rows = OutboundMessage.objects.filter(
        id__in=ids, claimed_by=worker, status=S.SENDING
    ).select_related("contact")
    return [
        ClaimedMessage(
            r.id,
            r.campaign_id,
            r.template_id,
            r.phone,
            r.parameters,
            r.attempts,
            int(status),
            r.valid_until,
            r.contact.attributes.get("timezone") if r.contact.attributes else None,
        )
        for r in rows
    ]


def bring_forward_retries(*, campaign_id: int, now: datetime | None = None) -> int:
    """Make a campaign's waiting transient-error retries due `now`; returns how many.

    For the tail of a campaign: once nothing else is due and the API answers normally, its
    last rows should not sit out backoffs while the number has capacity to spare. The attempt
    cap still holds (each retry is an attempt).
    """
    now = now or timezone.now()
    return OutboundMessage.objects.filter(
        campaign_id=campaign_id,
        status=S.RETRY,
        error_category="transient",
        next_attempt_at__gt=now,
    ).update(next_attempt_at=now)


def release(messages: list[ClaimedMessage]) -> int:
    """Give claimed-but-unsent rows back (pause, cancel, shutdown); the attempt never happened.
    Each keeps its place in the queue: its next_attempt_at, which the claim did not change."""
    if not messages:
        return 0
    outcomes = [RowOutcome(m.id, m.previous_status, m.attempts - 1) for m in messages]
    moved = 0
    with transaction.atomic():
        moved = len(record_outcomes(outcomes, from_statuses=(S.SENDING,)))
        # A cancel that raced the release: rows it did not see are cancelled now.
        OutboundMessage.objects.filter(
            id__in=[m.id for m in messages],
            status__in=(S.QUEUED, S.RETRY),
            campaign__status=Campaign.Status.CANCELLED,
        ).update(status=S.CANCELLED)
    return moved


def cancel_claimed(
    messages: list[ClaimedMessage], *, detail: str, status: int = S.CANCELLED
) -> int:
    """Claimed rows that must never be sent: an opt-out landed after the claim (cancelled),
    or the row's validity ended while it waited in hand (`status` expired)."""
    outcomes = [
        RowOutcome(m.id, status, max(0, m.attempts - 1), error_detail=detail) for m in messages
    ]
    return len(record_outcomes(outcomes, from_statuses=(S.SENDING,)))


_RECORD_SQL = f"""
WITH v AS (
    SELECT * FROM unnest(
        %s::bigint[], %s::smallint[], %s::smallint[], %s::timestamptz[], %s::text[],
        %s::integer[], %s::text[], %s::text[]
    ) AS v(id, status, attempts, next_attempt_at, wamid, error_code, error_category, error_detail)
), moved AS (
    UPDATE {TABLE} AS m SET
        status = v.status,
        attempts = v.attempts,
        next_attempt_at = COALESCE(v.next_attempt_at, m.next_attempt_at),
        wamid = COALESCE(v.wamid, m.wamid),
        error_code = v.error_code,
        error_category = v.error_category,
        error_detail = v.error_detail,
        claimed_at = CASE WHEN v.status = {S.UNKNOWN} THEN %s ELSE m.claimed_at END,
        accepted_at = CASE WHEN v.status = {S.ACCEPTED} THEN %s ELSE m.accepted_at END,
        failed_at = CASE WHEN v.status = {S.FAILED} THEN %s ELSE m.failed_at END,
        expired_at = CASE WHEN v.status = {S.EXPIRED} THEN %s ELSE m.expired_at END
    FROM v
    WHERE m.id = v.id AND m.status = ANY(%s)
    RETURNING m.id, m.campaign_id, v.status
), counts AS (
    SELECT campaign_id,
           count(*) FILTER (WHERE status = {S.ACCEPTED}) AS sent,
           count(*) FILTER (WHERE status = {S.FAILED}) AS failed,
           count(*) FILTER (WHERE status = {S.EXPIRED}) AS expired
    FROM moved GROUP BY campaign_id
), bump AS (
    UPDATE {CAMPAIGNS} AS c SET sent = c.sent + counts.sent, failed = c.failed + counts.failed,
        expired = c.expired + counts.expired
    FROM counts WHERE c.id = counts.campaign_id
        AND (counts.sent > 0 OR counts.failed > 0 OR counts.expired > 0)
    RETURNING c.id
){minutes.RECORD_CTE}
SELECT id, campaign_id, status FROM moved
"""  # noqa: S608


def record_outcomes(
    outcomes: list[RowOutcome],
    *,
    from_statuses: tuple[int, ...] = (S.SENDING, S.UNKNOWN),
    now: datetime | None = None,
) -> list[tuple[int, int, int]]:
    """Write outcomes of rows still in `from_statuses`, moving the campaign counters with them.

    A row a webhook already moved up the ladder is left alone (our answer came late). Returns
    (id, campaign_id, new status) for the rows actually moved.
    """
    if not outcomes:
        return []
    with transaction.atomic():
        moved = _record_outcomes(outcomes, from_statuses, now or timezone.now())
        # Outbound events for the moves, in this transaction (integrations outbox).
        publish_message_statuses([(row_id, status) for row_id, _c, status in moved])
    return moved


def _record_outcomes(
    outcomes: list[RowOutcome], from_statuses: tuple[int, ...], now: datetime
) -> list[tuple[int, int, int]]:
    if not _is_postgres():
        return _record_orm(outcomes, from_statuses, now)
    columns: list[list[Any]] = [
        [o.id for o in outcomes],
        [o.status for o in outcomes],
        [o.attempts for o in outcomes],
        [o.next_attempt_at for o in outcomes],
        [o.wamid for o in outcomes],
        [o.error_code for o in outcomes],
        [o.error_category for o in outcomes],
        [o.error_detail[:500] for o in outcomes],
    ]
    with connection.cursor() as cursor:
        cursor.execute(_RECORD_SQL, [*columns, now, now, now, now, list(from_statuses), now])
        return cursor.fetchall()


_COUNTERS: dict[int, str] = {S.ACCEPTED: "sent", S.FAILED: "failed", S.EXPIRED: "expired"}


def _record_orm(
    outcomes: list[RowOutcome], from_statuses: tuple[int, ...], now: datetime
) -> list[tuple[int, int, int]]:
    moved = []
    deltas = minutes.Deltas()
    with transaction.atomic():
        for o in outcomes:
            fields: dict[str, Any] = {
                "status": o.status,
                "attempts": o.attempts,
                "error_code": o.error_code,
                "error_category": o.error_category,
                "error_detail": o.error_detail[:500],
            }
            if o.next_attempt_at:
                fields["next_attempt_at"] = o.next_attempt_at
            if o.wamid:
                fields["wamid"] = o.wamid
            if o.status == S.UNKNOWN:
                fields["claimed_at"] = now
            if o.status == S.ACCEPTED:
                fields["accepted_at"] = now
            if o.status == S.FAILED:
                fields["failed_at"] = now
            if o.status == S.EXPIRED:
                fields["expired_at"] = now
            row = OutboundMessage.objects.filter(id=o.id, status__in=from_statuses)
            campaign_id = row.values_list("campaign_id", flat=True).first()
            if campaign_id is None or not row.update(**fields):
                continue
            moved.append((o.id, campaign_id, o.status))
            counter = _COUNTERS.get(o.status)
            if counter:
                Campaign.objects.filter(pk=campaign_id).update(**{counter: F(counter) + 1})
            if o.status in (S.ACCEPTED, S.FAILED):
                # The rows this moves had neither time (minutes: + at now, like the SQL).
                deltas.add(campaign_id, now, "accepted" if o.status == S.ACCEPTED else "failed")
        minutes.write(deltas)
    return moved


def recover_expired_leases(*, lease_seconds: float, now: datetime | None = None) -> int:
    """Rows claimed by a worker that died: the send may have happened, so they become unknown.

    The claim's attempt is given back and counted as a lost claim instead: nobody knows
    whether that send reached the API, and a crash must not use up the tries an API error
    allows. (A late answer of a worker that was only slow writes its attempts back.)
    """
    cutoff = (now or timezone.now()) - timedelta(seconds=lease_seconds)
    return OutboundMessage.objects.filter(status=S.SENDING, claimed_at__lt=cutoff).update(
        status=S.UNKNOWN,
        error_detail="worker lease expired",
        attempts=Greatest(F("attempts") - 1, 0),
        lost_claims=F("lost_claims") + 1,
    )

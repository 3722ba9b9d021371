"""Bounded data: what is purged after how long, in batches that never hold a hot table long.

Three kinds (settings `RETENTION_*`, docs/retention.md):

- `webhook_bodies`: `RawEvent` rows applied more than N days ago (their effects are in the
  status log, the queue and the inbox; a body not yet applied is never purged);
- `status_logs`: `StatusLog` rows received more than N days ago, except those of a campaign
  that is not finished (its statuses may still be deduplicated against them);
- `queue_parameters`: the rendered `parameters` of the queue rows of campaigns completed or
  cancelled more than N days ago; the rows stay (counters, reports, reply attribution);
- `outbound_events`: outbound event rows (integrations outbox) *delivered* and written more
  than N days ago (pending ones and dead letters stay: staff re-deliver those);
- `event_log`: message event log entries every active subscription has read, written more
  than RETENTION_EVENT_LOG_HOURS ago (their events are built from the queue rows);
- `idempotency_keys`: API Idempotency-Key answers older than API_IDEMPOTENCY_HOURS.

Each batch is one short transaction of at most `batch_size` rows chosen by primary key, so
the sender and the webhook applier only ever wait for one small batch. A run stops at its
time budget and the next run carries on where the data says (nothing to remember).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from campaigns.models import Campaign
from messaging.integrations.models import (
    EventLogCursor,
    EventSubscription,
    IdempotentRequest,
    MessageEventLog,
    OutboxEvent,
)
from messaging.models import OutboundMessage
from webhooks.models import RawEvent, StatusLog

logger = logging.getLogger(__name__)

KINDS = (
    "webhook_bodies",
    "status_logs",
    "queue_parameters",
    "outbound_events",
    "event_log",
    "idempotency_keys",
)
FINISHED = (Campaign.Status.COMPLETED, Campaign.Status.CANCELLED)
BATCH_SIZE = 2000

_RAW = RawEvent._meta.db_table
_LOG = StatusLog._meta.db_table
_QUEUE = OutboundMessage._meta.db_table
_CAMPAIGN = Campaign._meta.db_table
_OUTBOX = OutboxEvent._meta.db_table
_IDEMPOTENCY = IdempotentRequest._meta.db_table
_OUTBOX_PURGEABLE = f"state = {OutboxEvent.State.DELIVERED} AND created_at < %s"
_EVENT_LOG = MessageEventLog._meta.db_table
# Below every active subscription's cursor (all of it when none reads the log).
_EVENT_LOG_PURGEABLE = (
    "created_at < %s AND xid < COALESCE((SELECT min(c.xid) FROM "  # noqa: S608
    f"{EventLogCursor._meta.db_table} c JOIN {EventSubscription._meta.db_table} s "
    "ON s.id = c.subscription_id WHERE s.active), 9223372036854775807)"
)


@dataclass
class PurgeReport:
    """Rows removed (or, in a dry run, that would be) per kind; `complete` = nothing left."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    complete: bool = True


@dataclass(frozen=True)
class Cutoffs:
    webhook_bodies: datetime
    status_logs: datetime
    finished_campaigns: datetime
    outbound_events: datetime
    event_log: datetime
    idempotency_keys: datetime

    @classmethod
    def from_settings(cls, now: datetime | None = None) -> Cutoffs:
        now = now or timezone.now()
        return cls(
            webhook_bodies=now - timedelta(days=settings.RETENTION_WEBHOOK_BODY_DAYS),
            status_logs=now - timedelta(days=settings.RETENTION_STATUS_LOG_DAYS),
            finished_campaigns=now - timedelta(days=settings.RETENTION_FINISHED_CAMPAIGN_DAYS),
            outbound_events=now - timedelta(days=settings.RETENTION_OUTBOUND_EVENT_DAYS),
            event_log=now - timedelta(hours=settings.RETENTION_EVENT_LOG_HOURS),
            idempotency_keys=now - timedelta(hours=settings.API_IDEMPOTENCY_HOURS),
        )


# A status log row may go unless its queue row belongs to a campaign still under way.
_LOG_PURGEABLE = (
    "received_at < %s AND (outbound_id IS NULL OR NOT EXISTS ("  # noqa: S608
    f"SELECT 1 FROM {_QUEUE} o JOIN {_CAMPAIGN} c ON c.id = o.campaign_id "
    f"WHERE o.id = {_LOG}.outbound_id AND c.status NOT IN ('completed', 'cancelled')))"
)


def purge(
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    time_budget: float | None = None,
    batch_size: int = BATCH_SIZE,
) -> PurgeReport:
    """Purge everything past retention (or count it, with `dry_run`)."""
    cutoffs = Cutoffs.from_settings(now)
    report = PurgeReport()
    deadline = None if time_budget is None else time.monotonic() + time_budget
    if dry_run:
        report.counts = _count(cutoffs)
        return report
    steps: list[tuple[str, Callable[[int], tuple[int, bool]]]] = [
        ("webhook_bodies", _batches_below(_RAW, "applied_at < %s", cutoffs.webhook_bodies)),
        ("status_logs", _batches_below(_LOG, _LOG_PURGEABLE, cutoffs.status_logs)),
        ("queue_parameters", _parameter_batches(cutoffs.finished_campaigns)),
        (
            "outbound_events",
            _batches_below(
                _OUTBOX, _OUTBOX_PURGEABLE, cutoffs.outbound_events, time_column="created_at"
            ),
        ),
        (
            "event_log",
            _batches_below(
                _EVENT_LOG, _EVENT_LOG_PURGEABLE, cutoffs.event_log, time_column="created_at"
            ),
        ),
        (
            "idempotency_keys",
            _batches_below(
                _IDEMPOTENCY,
                "created_at < %s",
                cutoffs.idempotency_keys,
                time_column="created_at",
            ),
        ),
    ]
    for kind, step in steps:
        while True:
            if deadline is not None and time.monotonic() > deadline:
                report.complete = False
                return report
            done, more = step(batch_size)
            report.counts[kind] += done
            if not more:
                break
    return report


def scheduled_purge() -> dict[str, int]:
    """The cluster schedule's entry point (migration messaging/0005): bounded by the task
    timeout, so a big backlog is worked off over several runs."""
    budget = max(5.0, settings.Q_CLUSTER.get("timeout", 60) * 0.6)
    report = purge(time_budget=budget)
    if any(report.counts.values()):
        logger.info("purge: %s%s", report.counts, "" if report.complete else " (more left)")
    return report.counts


def _count(cutoffs: Cutoffs) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {_RAW} WHERE applied_at < %s",  # noqa: S608
            [cutoffs.webhook_bodies],
        )
        bodies = cursor.fetchone()[0]
        cursor.execute(
            f"SELECT count(*) FROM {_LOG} WHERE {_LOG_PURGEABLE}",  # noqa: S608
            [cutoffs.status_logs],
        )
        logs = cursor.fetchone()[0]
    parameters = (
        OutboundMessage.objects.filter(campaign__in=_campaigns_to_strip(cutoffs.finished_campaigns))
        .exclude(parameters=[])
        .count()
    )
    events = OutboxEvent.objects.filter(
        state=OutboxEvent.State.DELIVERED, created_at__lt=cutoffs.outbound_events
    ).count()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {_EVENT_LOG} WHERE {_EVENT_LOG_PURGEABLE}",  # noqa: S608
            [cutoffs.event_log],
        )
        event_log = cursor.fetchone()[0]
    keys = IdempotentRequest.objects.filter(created_at__lt=cutoffs.idempotency_keys).count()
    return {
        "webhook_bodies": bodies,
        "status_logs": logs,
        "queue_parameters": parameters,
        "outbound_events": events,
        "event_log": event_log,
        "idempotency_keys": keys,
    }


def _first_id_at_or_after(
    table: str, moment: datetime, time_column: str = "received_at"
) -> int | None:
    """Ids grow with `time_column` (both set by the insert), so everything older than
    `moment` lies below this id. The primary-key walk stops at the first newer row, so it
    costs what is about to be purged, not the whole table."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {table} WHERE {time_column} >= %s ORDER BY id LIMIT 1",  # noqa: S608
            [moment],
        )
        row = cursor.fetchone()
    return None if row is None else row[0]


def _batches_below(
    table: str, condition: str, cutoff: datetime, *, time_column: str = "received_at"
) -> Callable[[int], tuple[int, bool]]:
    """Deletes of at most `size` rows meeting `condition`, walking the primary key upwards
    from the oldest row to the first row received after the cutoff."""
    state: dict[str, int | None] = {"after": 0, "below": None}

    def step(size: int) -> tuple[int, bool]:
        if state["below"] is None:
            state["below"] = _first_id_at_or_after(table, cutoff, time_column) or _max_id(table) + 1
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"WITH doomed AS (SELECT id FROM {table} WHERE id > %s AND id < %s "  # noqa: S608
                f"AND {condition} ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) "
                f"DELETE FROM {table} t USING doomed WHERE t.id = doomed.id RETURNING t.id",
                [state["after"], state["below"], cutoff, size],
            )
            ids = [r[0] for r in cursor.fetchall()]
        if ids:
            state["after"] = max(ids)
        return len(ids), len(ids) == size

    return step


def _max_id(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(max(id), 0) FROM {table}")  # noqa: S608
        return cursor.fetchone()[0]


def _campaigns_to_strip(cutoff: datetime) -> list[int]:
    return list(
        Campaign.objects.filter(
            status__in=FINISHED, finished_at__lt=cutoff, parameters_purged_at__isnull=True
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _parameter_batches(cutoff: datetime) -> Callable[[int], tuple[int, bool]]:
    """One finished campaign at a time, its rows by primary-key windows; the campaign is
    marked when its last window is done, so later runs never read its rows again."""
    state: dict[str, object] = {"campaigns": None, "range": None}

    def step(size: int) -> tuple[int, bool]:
        if state["campaigns"] is None:
            state["campaigns"] = _campaigns_to_strip(cutoff)
        campaigns: list[int] = state["campaigns"]  # type: ignore[assignment]
        if not campaigns:
            return 0, False
        campaign_id = campaigns[0]
        if state["range"] is None:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT min(id), max(id) FROM {_QUEUE} WHERE campaign_id = %s",  # noqa: S608
                    [campaign_id],
                )
                low, high = cursor.fetchone()
            state["range"] = (low or 0, high or 0)
        low, high = state["range"]  # type: ignore[misc]
        with transaction.atomic():
            # Re-checked under the campaign's row lock: a campaign reopened in between
            # (requeue_failed) keeps its parameters.
            finished = (
                Campaign.objects.select_for_update()
                .filter(pk=campaign_id, status__in=FINISHED, finished_at__lt=cutoff)
                .exists()
            )
            done = 0
            if finished:
                done = (
                    OutboundMessage.objects.filter(
                        campaign_id=campaign_id, pk__gte=low, pk__lt=low + size, pk__lte=high
                    )
                    .exclude(parameters=[])
                    .update(parameters=[])
                )
            if not finished or low + size > high:
                if finished:
                    Campaign.objects.filter(pk=campaign_id).update(
                        parameters_purged_at=timezone.now()
                    )
                campaigns.pop(0)
                state["range"] = None
            else:
                state["range"] = (low + size, high)
        return done, True

    return step

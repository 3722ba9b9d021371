"""Reads of the send queue for admin pages and the metrics endpoint: GROUP BYs, never N+1."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, Sum
from django.utils import timezone

from campaigns.models import Campaign
from messaging.evidence import HELD_FOR_EVIDENCE
from messaging.models import OutboundMessage, OutboundStatus


def queue_counts(*, campaign_id: int) -> dict[str, int]:
    """Rows of one campaign per status label, every status present (0 when none): one query."""
    counts = dict.fromkeys(OutboundStatus.labels, 0)
    rows = (
        OutboundMessage.objects.filter(campaign_id=campaign_id)
        .values_list("status")
        .annotate(n=Count("*"))  # COUNT(*) lets PostgreSQL answer from the index alone
        .order_by()
    )
    for status, n in rows:
        counts[OutboundStatus(status).label] = n
    return counts


def failed_by_category(*, campaign_id: int) -> list[tuple[str, int]]:
    """Failed rows of one campaign per error category, largest first: one query."""
    rows = (
        OutboundMessage.objects.filter(campaign_id=campaign_id, status=OutboundStatus.FAILED)
        .values_list("error_category")
        .annotate(n=Count("id"))
        .order_by("-n", "error_category")
    )
    return [(category or "unknown", n) for category, n in rows]


@dataclass(frozen=True)
class Throughput:
    last_minute: int  # messages the API accepted in the last 60 s
    per_second_since_start: float | None  # accepted (the `sent` counter) / seconds running


def throughput(*, campaign: Campaign) -> Throughput:
    now = timezone.now()
    # accepted_at is deliberately unindexed (HOT updates); the campaign index narrows the scan.
    last_minute = OutboundMessage.objects.filter(
        campaign_id=campaign.pk,
        status__gte=OutboundStatus.ACCEPTED,
        accepted_at__gte=now - timedelta(seconds=60),
    ).count()
    rate = None
    if campaign.started_at:
        end = campaign.finished_at or now
        seconds = (end - campaign.started_at).total_seconds()
        if seconds > 0:
            rate = campaign.sent / seconds
    return Throughput(last_minute=last_minute, per_second_since_start=rate)


@dataclass(frozen=True)
class OpsMetrics:
    campaigns_by_status: dict[str, int]
    counters: dict[str, int]  # sums of Campaign.total/sent/delivered/read/failed
    queue_by_status: dict[str, int]  # unfinished rows only (queued … held)
    raw_events_pending: int | None  # None when the webhooks app is not installed


COUNTER_FIELDS = ("total", "sent", "delivered", "read", "failed")
UNFINISHED_STATUSES = (
    OutboundStatus.QUEUED,
    OutboundStatus.RETRY,
    OutboundStatus.SENDING,
    OutboundStatus.UNKNOWN,
    OutboundStatus.HELD,
)


def ops_metrics() -> OpsMetrics:
    """Everything /metrics shows, in three or four queries whatever the data size."""
    campaigns = dict.fromkeys(Campaign.Status.values, 0)
    counters = dict.fromkeys(COUNTER_FIELDS, 0)
    # One query gives both the per-status count and the counter sums.
    # Mapping: the counter sums are annotated under names the type checker cannot see.
    by_status: Iterable[Mapping[str, Any]] = (
        Campaign.objects.values("status")
        .annotate(n=Count("id"), **{f: Sum(f) for f in COUNTER_FIELDS})
        .order_by()
    )
    for row in by_status:
        campaigns[row["status"]] = row["n"]
        for field in COUNTER_FIELDS:
            counters[field] += row[field] or 0
    queue = {status.label: 0 for status in UNFINISHED_STATUSES}
    # Only rows the engine still owes work on: a GROUP BY over the whole queue grows with
    # history (~170 ms per million rows); this one seeks the (campaign, status) index per
    # campaign that can still have such rows. Final states are in the counters above.
    rows = (
        OutboundMessage.objects.filter(
            status__lt=OutboundStatus.ACCEPTED,
            campaign_id__in=Campaign.objects.exclude(status=Campaign.Status.COMPLETED).values("pk"),
        )
        .values_list("status")
        .annotate(n=Count("*"))
        .order_by()
    )
    for status, n in rows:
        queue[OutboundStatus(status).label] = n
    return OpsMetrics(
        campaigns_by_status=campaigns,
        counters=counters,
        queue_by_status=queue,
        raw_events_pending=_raw_events_pending(),
    )


def _raw_events_pending() -> int | None:
    from django.apps import apps

    if not apps.is_installed("webhooks"):
        return None
    try:
        raw_event = apps.get_model("webhooks", "RawEvent")
    except LookupError:
        return None
    # Served by the partial index rawevent_pending.
    return raw_event.objects.filter(applied_at__isnull=True).count()


# Unfinished rows that are not plain queued rows: small sets, each an index range on
# (campaign, status). Plain queued rows are derived from the counters instead of counted.
WAITING_STATUSES = (
    OutboundStatus.RETRY,
    OutboundStatus.SENDING,
    OutboundStatus.UNKNOWN,
    OutboundStatus.HELD,
)


@dataclass(frozen=True)
class WaitingReason:
    """Rows of a campaign that wait for something other than their turn, and why."""

    key: str  # stable identifier, e.g. "retry:131049"
    count: int
    reason: str  # a sentence for staff
    until: datetime | None = None  # the soonest such row may go, when known


# Retry rows read to say which errors they wait after (the soonest ones, from the due index):
# a bound, so a campaign with a million rows in retry costs the same as one with a hundred.
RETRY_CODE_SAMPLE = 500


def waiting_reasons(campaign: Campaign) -> list[WaitingReason]:
    """Why rows of `campaign` are not sent yet, beyond waiting for their turn. Two queries of
    bounded cost: rows per small status (retry, sending, unknown, held) from the
    (campaign, status) index, and the error codes of the soonest RETRY_CODE_SAMPLE retry rows
    from the due index; retry rows past the sample are one more line.

    The engine's other reasons (window closed, budget, frequency cap, canary) belong here too,
    each as one more WaitingReason, so the campaign page and its JSON show them unchanged.
    """
    from messaging.errors import classify

    counts: dict[int, int] = {}
    held_for_evidence = 0
    by_status = (
        OutboundMessage.objects.filter(campaign_id=campaign.pk, status__in=WAITING_STATUSES)
        .values_list("status", "error_category")
        .annotate(n=Count("*"))
        .order_by()
    )
    for status, category, n in by_status:
        if status == OutboundStatus.UNKNOWN and category == HELD_FOR_EVIDENCE:
            held_for_evidence += n
        else:
            counts[status] = counts.get(status, 0) + n
    reasons = []
    retrying = counts.get(OutboundStatus.RETRY, 0)
    # Asked even when there are none, so the query count never depends on the data.
    soonest = (
        OutboundMessage.objects.filter(campaign_id=campaign.pk, status=OutboundStatus.RETRY)
        .order_by("next_attempt_at", "id")
        .values_list("error_code", "next_attempt_at")[:RETRY_CODE_SAMPLE]
    )
    by_code: dict[int | None, tuple[int, datetime]] = {}
    for code, at in soonest:
        n, first = by_code.get(code, (0, at))
        by_code[code] = (n + 1, min(first, at))
    for code, (n, first) in sorted(by_code.items(), key=lambda item: item[1][1]):
        rule = classify(code)
        what = f"error {code}: {rule.description}" if code is not None else "a network error"
        reasons.append(WaitingReason(f"retry:{code}", n, f"waiting to retry after {what}", first))
    rest = retrying - sum(n for n, _ in by_code.values())
    if rest > 0:
        reasons.append(WaitingReason("retry:later", rest, "more waiting to retry after these"))
    for status, key, reason in (
        (OutboundStatus.SENDING, "sending", "being sent right now"),
        (
            OutboundStatus.UNKNOWN,
            "unknown",
            "sent, but the API's answer was lost: waiting for its webhook",
        ),
        (OutboundStatus.HELD, "held", "held for staff to decide"),
    ):
        if counts.get(status):
            reasons.append(WaitingReason(key, counts[status], reason))
    if held_for_evidence:
        reasons.append(WaitingReason("held:webhooks", held_for_evidence, HELD_REASON))
    return reasons + policy_waits(campaign)


# In-doubt rows the `evidence` policy holds (messaging.evidence).
HELD_REASON = (
    "sent, but the API's answer was lost, and no status webhook has arrived for a later "
    "message of this number, so a re-send could be a duplicate: held, not sent. Check the "
    "app's webhook subscription; they are re-sent once later messages get their statuses, "
    "or settled by their own late webhook"
)

# What the send policy's gate writes on a row it holds back (messaging.policy.gate).
POLICY_WAITS = {
    "wait:window": "waiting for the sending window to open in the recipient's time zone",
    "wait:frequency_cap": "waiting: the person reached the marketing frequency cap",
    "wait:budget": "waiting for the portfolio's messaging limit (24 h unique recipients)",
    "wait:canary": "held until the canary's verdict",
}


def policy_waits(campaign: Campaign) -> list[WaitingReason]:
    """Queued rows the send policy moved to a later time, by reason: a range of the due index
    (campaign, queued, next_attempt_at in the future), so rows due now are never read."""
    rows = (
        OutboundMessage.objects.filter(
            campaign_id=campaign.pk,
            status=OutboundStatus.QUEUED,
            next_attempt_at__gt=timezone.now(),
            error_category__in=list(POLICY_WAITS),
        )
        .values_list("error_category")
        .annotate(n=Count("*"), soonest=Min("next_attempt_at"))
        .order_by("error_category")
    )
    return [
        WaitingReason(key, n, _wait_text(campaign, key), _wait_until(key, soonest))
        for key, n, soonest in rows
    ]


def _wait_text(campaign: Campaign, key: str) -> str:
    if key == "wait:canary" and campaign.canary_size:
        return (
            f"{POLICY_WAITS[key]} ({campaign.canary_size} canary messages, "
            f"{campaign.canary_percent:g} %)"
        )
    return POLICY_WAITS[key]


def _wait_until(key: str, soonest: datetime | None) -> datetime | None:
    # Held canary rows have no time of their own: the verdict releases them. The plan knows
    # its latest moment and adds it (messaging.policy.plan.timed_waits).
    return None if key == "wait:canary" else soonest


@dataclass(frozen=True)
class DegradedNumber:
    sender_id: int
    display_number: str
    since: datetime | None


def paced_by_postgres() -> list[DegradedNumber]:
    """Sender numbers paced by PostgreSQL right now because Redis was lost (degraded mode,
    messaging/pacing_failover.py): one query on a table of one row per number."""
    from messaging.models import PacingState

    rows = (
        PacingState.objects.filter(mode=PacingState.Mode.POSTGRES)
        .select_related("sender")
        .order_by("since")
    )
    return [DegradedNumber(r.sender_id, r.sender.display_number, r.since) for r in rows]


def message_timeline(row: OutboundMessage) -> list[dict[str, Any]]:
    """What happened to one message, in order: accepted (our answer), each status WhatsApp
    reported, and `expired` when it ended so (never sent, its detail says which deadline)."""
    timeline: list[dict[str, Any]] = []
    if row.accepted_at:
        timeline.append({"at": row.accepted_at, "status": "accepted"})
    for log in row.status_logs.order_by("timestamp", "id"):
        timeline.append(
            {
                "at": log.timestamp,
                "status": log.status,
                "error_code": log.error_code,
                "error_title": log.error_title,
            }
        )
    if row.status == OutboundStatus.EXPIRED:
        at = row.expired_at
        if at is None:  # expired before the time was recorded: it was due by its deadline
            from messaging.policy.gate import deadline

            at = deadline(row.campaign.valid_until, row.valid_until)
        if at is not None:
            timeline.append({"at": at, "status": "expired", "error_title": row.error_detail})
    return timeline

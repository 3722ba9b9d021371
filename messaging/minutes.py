"""Per-campaign per-minute counts (`CampaignMinute`): what the campaign chart reads.

A minute holds the campaign's rows whose `accepted_at`, `delivered_at`, `read_at` or
`failed_at` falls in it, and the replies attributed to the campaign received in it. Every
writer of those timestamps moves the minutes in its own transaction, +1 at the minute a
timestamp takes and -1 at the minute it loses, so a minute always equals a recount of the rows
(`recount`; the tests compare the two after runs with retries and webhooks):

- the sender's record statement (`messaging.queue`, a CTE of the same statement);
- the status ladder (`webhooks.statuses.ladder`, from each locked row's before/after);
- reply attribution (`webhooks.inbound.record_inbound`);
- staff requeue of failed rows (`messaging.services.requeue_failed`).

Lock order: minutes are written after the campaign counters, in (campaign, minute) order, by
every writer, so a sender and a webhook applier never wait on each other in a cycle.
docs/results.md has the chart's costs before and after.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncMinute

from campaigns.models import Campaign
from messaging.models import CampaignMinute, OutboundMessage
from messaging.sql_paths import postgres_fast_paths

KINDS = ("accepted", "delivered", "read", "failed", "replied")
# The queue row timestamps counted, in KINDS order.
ROW_TIMESTAMPS = ("accepted_at", "delivered_at", "read_at", "failed_at")
TABLE = CampaignMinute._meta.db_table

Key = tuple[int, datetime]


def minute_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(second=0, microsecond=0)


class Deltas:
    """Changes to some campaigns' minutes, gathered during a transaction and written once."""

    def __init__(self) -> None:
        self._by_key: dict[Key, list[int]] = {}

    def add(self, campaign_id: int, at: datetime, kind: str, n: int = 1) -> None:
        key = (campaign_id, minute_of(at))
        counts = self._by_key.setdefault(key, [0] * len(KINDS))
        counts[KINDS.index(kind)] += n

    def move_row(
        self,
        campaign_id: int,
        before: Sequence[datetime | None],
        after: Sequence[datetime | None],
    ) -> None:
        """A queue row's ROW_TIMESTAMPS went from `before` to `after`."""
        for kind, old, new in zip(KINDS, before, after, strict=False):
            if old == new:
                continue
            if old is not None:
                self.add(campaign_id, old, kind, -1)
            if new is not None:
                self.add(campaign_id, new, kind, +1)

    def rows(self) -> list[tuple[int, datetime, list[int]]]:
        """Non-zero changes in lock order (campaign, minute)."""
        return [(c, m, n) for (c, m), n in sorted(self._by_key.items()) if any(n)]

    def __bool__(self) -> bool:
        return bool(self.rows())


_UPSERT_SQL = (
    f"INSERT INTO {TABLE} (campaign_id, minute, {', '.join(KINDS)}) "  # noqa: S608
    "SELECT * FROM unnest(%s::bigint[], %s::timestamptz[], "
    + ", ".join("%s::integer[]" for _ in KINDS)
    + ") ON CONFLICT (campaign_id, minute) DO UPDATE SET "
    + ", ".join(f"{k} = {TABLE}.{k} + EXCLUDED.{k}" for k in KINDS)
)


def write(deltas: Deltas) -> None:
    """Apply the changes (one statement on PostgreSQL). Call it after the campaign counters."""
    rows = deltas.rows()
    if not rows:
        return
    if postgres_fast_paths():
        columns: list[list[Any]] = [[c for c, _m, _n in rows], [m for _c, m, _n in rows]]
        columns += [[n[i] for _c, _m, n in rows] for i in range(len(KINDS))]
        with connection.cursor() as cursor:
            cursor.execute(_UPSERT_SQL, columns)
        return
    for campaign_id, minute, counts in rows:
        values = dict(zip(KINDS, counts, strict=True))
        _obj, created = CampaignMinute.objects.get_or_create(
            campaign_id=campaign_id, minute=minute, defaults=values
        )
        if not created:
            CampaignMinute.objects.filter(campaign_id=campaign_id, minute=minute).update(
                **{k: F(k) + v for k, v in values.items() if v}
            )


# For messaging.queue's record statement: the `counts` CTE's accepted/failed moves at `now`,
# inserted after `bump` (the campaign counters) has run, through the join on it.
RECORD_CTE = f"""
, minute AS (
    INSERT INTO {TABLE} AS t (campaign_id, minute, {", ".join(KINDS)})
    SELECT counts.campaign_id, date_trunc('minute', %s::timestamptz AT TIME ZONE 'UTC')
               AT TIME ZONE 'UTC',
           counts.sent, 0, 0, counts.failed, 0
    FROM counts JOIN bump ON bump.id = counts.campaign_id
    WHERE counts.sent > 0 OR counts.failed > 0
    ORDER BY counts.campaign_id
    ON CONFLICT (campaign_id, minute) DO UPDATE SET
        accepted = t.accepted + EXCLUDED.accepted, failed = t.failed + EXCLUDED.failed
)"""  # noqa: S608


def stored(campaign_id: int) -> dict[tuple[datetime, str], int]:
    """The campaign's minutes as {(minute, kind): count}, zeros left out."""
    out: dict[tuple[datetime, str], int] = {}
    for row in CampaignMinute.objects.filter(campaign_id=campaign_id).values_list("minute", *KINDS):
        for kind, n in zip(KINDS, row[1:], strict=True):
            if n:
                out[(minute_of(row[0]), kind)] = n
    return out


def recount(campaign_id: int) -> dict[tuple[datetime, str], int]:
    """The same from the rows themselves: one grouped query per timestamp (a full read of
    the campaign's rows; for tests and `rebuild`, never for a page)."""
    from webhooks.models import InboundMessage

    out: dict[tuple[datetime, str], int] = {}
    sources: list[tuple[QuerySet[Any], str, str]] = [
        (OutboundMessage.objects.filter(campaign_id=campaign_id), column, kind)
        for column, kind in zip(ROW_TIMESTAMPS, KINDS, strict=False)
    ]
    sources.append((InboundMessage.objects.filter(campaign_id=campaign_id), "timestamp", "replied"))
    for queryset, column, kind in sources:
        grouped = (
            queryset.filter(**{f"{column}__isnull": False})
            .annotate(m=TruncMinute(column, tzinfo=UTC))
            .values_list("m")
            .annotate(n=Count("*"))
            .order_by()
        )
        for minute, n in grouped:
            out[(minute_of(minute), kind)] = n
    return out


def rebuild(campaign_id: int) -> int:
    """Replace the campaign's minutes by a recount (backfill, bulk-loaded benchmark data).
    Call it where nothing else writes the campaign. Returns the minutes written."""
    counts = recount(campaign_id)
    minutes = sorted({m for m, _k in counts})
    CampaignMinute.objects.filter(campaign_id=campaign_id).delete()
    CampaignMinute.objects.bulk_create(
        CampaignMinute(
            campaign_id=campaign_id, minute=m, **{k: counts.get((m, k), 0) for k in KINDS}
        )
        for m in minutes
    )
    return len(minutes)


def per_minute(campaign_id: int) -> list[tuple[datetime, tuple[int, ...]]]:
    """(minute, counts in KINDS order) for the chart: one index range, O(minutes)."""
    return [
        (minute_of(row[0]), tuple(row[1:]))
        for row in CampaignMinute.objects.filter(campaign_id=campaign_id)
        .order_by("minute")
        .values_list("minute", *KINDS)
    ]


def send_rates(*, now: datetime) -> dict[int, float]:
    """Messages accepted per second over the last 60 s, per sender number (every campaign and
    the transactional stream on it), from the minutes every worker's record step moves.

    The last 60 s are the current minute so far and the end of the one before, which counts
    in proportion (a sliding window over two fixed ones: exact at a steady rate). Only the
    campaigns that can have sent meanwhile are read (running, or changed state since), one
    index probe each.
    """
    current = minute_of(now)
    previous = current - timedelta(minutes=1)
    share_of_previous = 1.0 - (now - current).total_seconds() / 60.0
    recent = Campaign.objects.filter(
        Q(status=Campaign.Status.RUNNING) | Q(updated_at__gte=previous)
    ).values("pk")
    rows = (
        CampaignMinute.objects.filter(campaign_id__in=recent, minute__in=[previous, current])
        .values_list("campaign__sender_id", "minute")
        .annotate(n=Sum("accepted"))
        .order_by()
    )
    rates: dict[int, float] = {}
    for sender_id, minute, n in rows:
        weight = 1.0 if minute_of(minute) == current else share_of_previous
        rates[sender_id] = rates.get(sender_id, 0.0) + (n or 0) * weight / 60.0
    return rates

"""The operations dashboard: campaigns running or scheduled, and each sender number's
quality, messaging limit, learned rate, today's sends and failure rate.

Today's figures come from one grouped query over the queue rows of campaigns that can have
sent today (running or paused, or finished since midnight), cached for CACHE_SECONDS so the
page costs that scan at most once a minute whoever looks (docs/results.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache
from django.db.models import Count, Q
from django.utils import timezone

from campaigns.models import Campaign, SenderNumber
from campaigns.results import figures
from messaging.models import OutboundMessage

CACHE_SECONDS = 60


@dataclass(frozen=True)
class SenderToday:
    sender: SenderNumber
    sent: int  # accepted by the API since local midnight
    failed: int  # failed since local midnight

    @property
    def failure_rate(self) -> float | None:
        return figures.ratio(self.failed, self.sent + self.failed)


def active_campaigns() -> list[Campaign]:
    """Running, paused and scheduled campaigns, soonest first, with their page counts."""
    campaigns = list(
        Campaign.objects.filter(
            status__in=(
                Campaign.Status.RUNNING,
                Campaign.Status.PAUSED,
                Campaign.Status.SCHEDULED,
            )
        )
        .select_related("sender")
        .order_by("status", "start_at", "id")[:50]
    )
    figures.attach_page_counts(campaigns)
    return campaigns


def _today_counts(midnight: datetime) -> dict[int, tuple[int, int]]:
    live = Campaign.objects.filter(
        Q(status__in=(Campaign.Status.RUNNING, Campaign.Status.PAUSED))
        | Q(finished_at__gte=midnight)
    ).values("pk")
    rows = (
        OutboundMessage.objects.filter(campaign_id__in=live)
        .filter(Q(accepted_at__gte=midnight) | Q(failed_at__gte=midnight))
        .values_list("sender_id")
        .annotate(
            sent=Count("id", filter=Q(accepted_at__gte=midnight)),
            failed=Count("id", filter=Q(failed_at__gte=midnight)),
        )
        .order_by()
    )
    return {sender_id: (sent, failed) for sender_id, sent, failed in rows}


def senders_today() -> list[SenderToday]:
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    key = f"dashboard-today:{midnight.date().isoformat()}"
    counts = cache.get(key)
    if counts is None:
        counts = _today_counts(midnight)
        cache.set(key, counts, timeout=CACHE_SECONDS)
    return [
        SenderToday(sender, *counts.get(sender.pk, (0, 0)))
        for sender in SenderNumber.objects.select_related("account").order_by("display_number")
    ]

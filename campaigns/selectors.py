"""Reads of campaigns for admin: list querysets, progress and rates from the counters."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import Prefetch, QuerySet

from campaigns.models import Campaign, CampaignTemplate, ImportRejection


def campaigns_for_list(queryset: QuerySet[Campaign]) -> QuerySet[Campaign]:
    """The changelist's rows: sender joined, templates prefetched in one query for the page."""
    return queryset.select_related("sender").prefetch_related(
        Prefetch(
            "template_links",
            queryset=CampaignTemplate.objects.select_related("template").order_by("position"),
        )
    )


def template_links(campaign: Campaign) -> list[CampaignTemplate]:
    """The campaign's templates in send order; uses the prefetch when there is one."""
    return sorted(campaign.template_links.all(), key=lambda link: link.position)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class Progress:
    done: int  # rows the sender is finished with, as far as the counters tell
    total: int
    delivered_rate: float | None  # delivered / sent
    read_rate: float | None  # read / delivered
    failed_rate: float | None  # failed / total

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


def progress(campaign: Campaign) -> Progress:
    """From the counters only, never the queue. A row accepted then failed counts in both
    `sent` and `failed`, so `sent + failed` can overshoot: it is capped at `total`, and a
    completed campaign is done by definition (cancelled rows have no counter)."""
    done = campaign.sent + campaign.failed
    if campaign.status == Campaign.Status.COMPLETED:
        done = campaign.total
    return Progress(
        done=min(done, campaign.total),
        total=campaign.total,
        delivered_rate=_ratio(campaign.delivered, campaign.sent),
        read_rate=_ratio(campaign.read, campaign.delivered),
        failed_rate=_ratio(campaign.failed, campaign.total),
    )


def rejection_rows(*, campaign_id: int, chunk_size: int = 2000) -> Iterator[tuple[int, str, str]]:
    """(row_number, value, reason) of a campaign's import rejections, in file order, streamed."""
    return (
        ImportRejection.objects.filter(campaign_id=campaign_id)
        .order_by("row_number", "id")
        .values_list("row_number", "value", "reason")
        .iterator(chunk_size=chunk_size)
    )

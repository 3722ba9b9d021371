"""Reads of campaigns for admin: list querysets and the rejection report (figures and rates:
campaigns/results/figures.py)."""

from __future__ import annotations

from collections.abc import Iterator

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


def rejection_rows(*, campaign_id: int, chunk_size: int = 2000) -> Iterator[tuple[int, str, str]]:
    """(row_number, value, reason) of a campaign's import rejections, in file order, streamed."""
    return (
        ImportRejection.objects.filter(campaign_id=campaign_id)
        .order_by("row_number", "id")
        .values_list("row_number", "value", "reason")
        .iterator(chunk_size=chunk_size)
    )

"""A campaign's recipients with their outcome, as rows for a CSV, streamed from the database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import CharField, Min, Subquery
from django.db.models.functions import Cast

from campaigns.models import CampaignTemplate
from messaging.cohorts import recipients, replies_to_row
from messaging.models import OutboundStatus

EXPORT_HEADER = (
    "phone",
    "name",
    "template",
    "status",
    "error_code",
    "error_title",
    "accepted_at",
    "delivered_at",
    "read_at",
    "replied_at",
)
# Rows fetched per round trip of the server-side cursor: memory stays at one chunk.
EXPORT_CHUNK_ROWS = 5000


def _first_reply() -> Subquery:
    return Subquery(
        replies_to_row()
        .order_by()
        .values("user_phone")
        .annotate(first=Min("timestamp"))
        .values("first")[:1]
    )


def recipient_rows(
    *, campaign_id: int, outcome: str | None = None, chunk_size: int = EXPORT_CHUNK_ROWS
) -> Iterator[tuple[Any, ...]]:
    """One tuple per recipient (EXPORT_HEADER's columns), in send order.

    A server-side cursor on PostgreSQL (`iterator(chunk_size)`): a million rows never sit in
    memory. Template names come from the campaign's few templates, not a join per row.
    """
    templates = {
        link.template_id: str(link.template)
        for link in CampaignTemplate.objects.filter(campaign_id=campaign_id).select_related(
            "template"
        )
    }
    labels = dict(OutboundStatus.choices)
    # Times as the database writes them (UTC): parsing a million datetimes into Python only
    # to print them again would be most of the export's CPU.
    times = {
        f"{name}_text": Cast(name, output_field=CharField())
        for name in ("accepted_at", "delivered_at", "read_at")
    }
    rows = (
        recipients(campaign_id=campaign_id, outcome=outcome)
        .annotate(replied_at_text=Cast(_first_reply(), output_field=CharField()), **times)
        .values_list(
            "phone",
            "contact__name",
            "template_id",
            "status",
            "error_code",
            "error_detail",
            "accepted_at_text",
            "delivered_at_text",
            "read_at_text",
            "replied_at_text",
        )
        .iterator(chunk_size=chunk_size)
    )
    for phone, name, template_id, status, *rest in rows:
        yield (phone, name, templates.get(template_id, template_id), labels[status], *rest)

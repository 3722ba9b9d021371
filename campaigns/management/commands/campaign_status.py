"""A campaign's counters and queue counts: `manage.py campaign_status ID [--json]`."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db.models import Count

from campaigns.commands import SafeCommand, field_range
from campaigns.models import Campaign
from messaging.models import OutboundMessage, OutboundStatus


def campaign_status(campaign: Campaign) -> dict[str, Any]:
    """The counters (cumulative, kept by the services) and the queue by state, zeros included."""
    counts = dict(
        OutboundMessage.objects.filter(campaign=campaign)
        .values_list("status")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {
        "id": campaign.pk,
        "name": campaign.name,
        "status": campaign.status,
        "sender": campaign.sender.phone_number_id,
        "priority": campaign.priority,
        "total": campaign.total,
        "sent": campaign.sent,
        "delivered": campaign.delivered,
        "read": campaign.read,
        "failed": campaign.failed,
        "rejected": campaign.rejected_count,
        "duplicates": campaign.duplicate_count,
        "suppressed": campaign.suppressed_count,
        "start_at": campaign.start_at.isoformat() if campaign.start_at else None,
        "started_at": campaign.started_at.isoformat() if campaign.started_at else None,
        "finished_at": campaign.finished_at.isoformat() if campaign.finished_at else None,
        "pause_reason": campaign.pause_reason,
        "queue": {status.label: counts.get(status.value, 0) for status in OutboundStatus},
    }


class Command(SafeCommand):
    help = "Show a campaign's counters and how many of its messages are in each queue state."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("id", help="the campaign id")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        text = options["id"].strip()
        _, largest = field_range(Campaign, "id")
        try:
            if not text.isdigit() or int(text) > largest:
                raise Campaign.DoesNotExist
            campaign = Campaign.objects.select_related("sender").get(pk=int(text))
        except Campaign.DoesNotExist:
            raise CommandError(f"no campaign with id {options['id']!r}") from None
        status = campaign_status(campaign)
        if options["json"]:
            self.stdout.write(json.dumps(status))
            return
        self.stdout.write(
            f"campaign {status['id']} ({status['name']}): {status['status']}"
            + (f" ({status['pause_reason']})" if status["pause_reason"] else "")
        )
        self.stdout.write(
            "  total {total}, sent {sent}, delivered {delivered}, read {read}, "
            "failed {failed}; import: {rejected} rejected, {duplicates} duplicates, "
            "{suppressed} suppressed".format(**status)
        )
        queue = ", ".join(f"{label} {n}" for label, n in status["queue"].items())
        self.stdout.write(f"  queue: {queue}")

"""The sender end to end against the simulator: outcomes, counters, completion, errors."""

from __future__ import annotations

import pytest

from campaigns.models import Campaign
from messaging.models import OutboundMessage, OutboundStatus
from messaging.sender import run_number
from tests.engine.conftest import make_campaign

pytestmark = pytest.mark.django_db(transaction=True)


def statuses(campaign) -> dict[str, int]:
    rows = OutboundMessage.objects.filter(campaign=campaign)
    return {OutboundStatus(s).label: rows.filter(status=s).count() for s in OutboundStatus}


def test_a_campaign_is_sent_once_per_contact_and_completes(sim, sender, template):
    sender.rate_mps = 500
    sender.save()
    campaign = make_campaign(sender=sender, templates=[template], contacts=120)

    run_number(sender.pk, worker_id="t1", max_seconds=30, until_idle=True)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert campaign.sent == 120 and campaign.failed == 0
    assert statuses(campaign)["accepted"] == 120
    assert OutboundMessage.objects.filter(campaign=campaign, wamid__isnull=True).count() == 0
    stats = sim.stats()
    assert stats["accepted"] == 120
    assert stats["callbacks"]["exactly_once"] == 120
    assert stats["callbacks"]["more_than_once"] == 0

"""The per-minute counts the chart reads equal a recount of the rows after a real run: the
sender against the simulator with send errors that retry, statuses by webhook (shuffled,
duplicated, some failing after acceptance and retried), replies, and a staff requeue."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from campaigns.results import chart
from messaging import minutes
from messaging.models import OutboundMessage, OutboundStatus
from messaging.sender import run_number
from messaging.services import requeue_failed
from tests.engine.conftest import make_campaign
from webhooks import drain
from webhooks.models import InboundMessage

pytestmark = pytest.mark.django_db(transaction=True)


def _settle(sim, seconds: float = 20) -> None:
    """Until the simulator has posted every planned webhook and the app applied them."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        drain.apply_batch()
        if not sim.stats()["webhooks"]["pending"] and not drain.pending_exists():
            drain.apply_batch()
            return
        time.sleep(0.1)
    raise AssertionError(f"webhooks still pending: {sim.stats()['webhooks']}")


@pytest.mark.parametrize("portable", [False, True], ids=["postgres", "portable-sql"])
def test_minutes_equal_a_recount_after_retries_webhooks_and_requeue(
    sim, sender, template, live_server, settings, portable
):
    settings.FORCE_PORTABLE_SQL = portable
    settings.WHATSAPP_APP_SECRET = sim.app_secret
    settings.WEBHOOK_KICK_SECONDS = 0
    settings.AUTO_REPLY_ENABLED = False
    sim.configure(
        webhook_url=f"{live_server.url}/webhooks/whatsapp/",
        webhook_delay_ms=20,
        webhook_shuffle=True,
        webhook_duplicate_rate=0.2,
        # Refused at send (retried by the sender) and failed after acceptance by webhook
        # (131000: retried, which clears the accepted time; 131026: failed for good).
        error_rates={"133004": 0.15},
        webhook_error_rates={131000: 0.15, 131026: 0.05},
        delivered_rate=0.9,
        read_rate=0.6,
        reply_rate=0.3,
    )
    sender.rate_mps = 400
    sender.save()
    campaign = make_campaign(
        sender=sender, templates=[template], contacts=300, started_at=timezone.now()
    )
    rows = OutboundMessage.objects.filter(campaign=campaign)

    for _ in range(4):
        run_number(sender.pk, worker_id="t", max_seconds=10, until_idle=True)
        _settle(sim)
    assert rows.filter(status=OutboundStatus.FAILED).exists()
    assert rows.filter(attempts__gt=1).exists()  # retries happened
    assert InboundMessage.objects.filter(campaign=campaign).exists()
    requeue_failed(campaign_id=campaign.pk)  # staff's second chance: times cleared, counted
    sim.configure(error_rates={}, webhook_error_rates={})
    run_number(sender.pk, worker_id="t", max_seconds=10, until_idle=True)
    _settle(sim)

    recount = minutes.recount(campaign.pk)
    assert minutes.stored(campaign.pk) == recount
    campaign.refresh_from_db()
    data = chart.chart(campaign)
    assert data is not None
    totals = chart.totals(data)
    assert totals["accepted"] == rows.filter(accepted_at__isnull=False).count() == campaign.sent
    assert totals["delivered"] == rows.filter(delivered_at__isnull=False).count()
    assert totals["read"] == rows.filter(read_at__isnull=False).count()
    assert totals["failures"] == rows.filter(failed_at__isnull=False).count() == campaign.failed
    assert totals["replies"] == InboundMessage.objects.filter(campaign=campaign).count() > 0


def test_rebuild_replaces_the_minutes_by_a_recount(sender, template):
    campaign = make_campaign(sender=sender, templates=[template], contacts=3)
    deltas = minutes.Deltas()
    deltas.add(campaign.pk, campaign.created_at, "read", 5)  # nothing was read: wrong
    minutes.write(deltas)
    assert minutes.stored(campaign.pk) != minutes.recount(campaign.pk)
    minutes.rebuild(campaign.pk)
    assert minutes.stored(campaign.pk) == minutes.recount(campaign.pk) == {}

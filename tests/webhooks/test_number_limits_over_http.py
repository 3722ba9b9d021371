"""The simulator sends business_capability_update and phone_number_quality_update to the
running app over HTTP, signed; the limit lands once, and sync_numbers then agrees."""

from __future__ import annotations

import time

import pytest
from django.core.management import call_command

from campaigns.models import Portfolio, SenderNumber, TierSource
from messaging.models import NumberChange
from messaging.policy import budget
from tests import factories
from webhooks.drain import drain
from webhooks.models import RawEvent

pytestmark = pytest.mark.django_db(transaction=True)


def _arrived(count: int) -> None:
    deadline = time.monotonic() + 10
    while RawEvent.objects.count() < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert RawEvent.objects.count() == count
    drain()


def test_capability_and_quality_webhooks_from_the_simulator(fresh_simulator, live_server, settings):
    sim = fresh_simulator
    settings.WHATSAPP_API_BASE_URL = sim.base_url
    settings.WHATSAPP_ACCESS_TOKEN = sim.token
    portfolio = Portfolio.objects.create(
        business_id="31", messaging_tier="TIER_10K", tier_source=TierSource.GRAPH
    )
    account = factories.AccountFactory(portfolio=portfolio)
    number = factories.SenderFactory(
        account=account, display_number="+15550000000", messaging_tier="TIER_10K"
    )
    sim.configure(
        webhook_url=f"{live_server.url}/webhooks/whatsapp/",
        waba_id=account.waba_id,
        messaging_tier="TIER_10K",
    )

    sim.capability_event(max_daily_conversations_per_business=2000)
    sim.capability_event(max_daily_conversations_per_business=2000)  # a redelivery
    _arrived(2)

    portfolio.refresh_from_db()
    assert (portfolio.messaging_tier, portfolio.tier_source) == ("TIER_2K", TierSource.WEBHOOK)
    assert budget.ledger_for(number.pk).limit == 2000
    assert NumberChange.objects.count() == 1

    call_command("sync_numbers")  # the API now says TIER_2K too: nothing more changes
    assert NumberChange.objects.count() == 1
    portfolio.refresh_from_db()
    assert portfolio.tier_source == TierSource.GRAPH

    sim.number_event(event="FLAGGED")
    _arrived(3)
    number.refresh_from_db()
    assert number.status == SenderNumber.Status.FLAGGED
    assert number.quality_rating == SenderNumber.Quality.RED

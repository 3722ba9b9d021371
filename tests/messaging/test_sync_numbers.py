"""sync_numbers over HTTP against the simulator's phone-number GET: the tier, quality, status
and name land on the number and the portfolio, and the budget follows."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from django.core.management import CommandError, call_command
from django.utils import timezone

from campaigns.models import Campaign, Portfolio, SenderNumber, TierSource
from messaging.models import NumberChange, OutboundStatus
from messaging.policy import budget
from messaging.policy.gate import WAIT_BUDGET
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(fresh_simulator, settings, redis_client):
    settings.WHATSAPP_API_BASE_URL = fresh_simulator.base_url
    settings.WHATSAPP_ACCESS_TOKEN = fresh_simulator.token
    return fresh_simulator


@pytest.fixture
def portfolio_numbers():
    portfolio = Portfolio.objects.create(business_id="5550001", name="Acme")
    account = factories.AccountFactory(portfolio=portfolio)
    return portfolio, factories.SenderFactory.create_batch(2, account=account)


def test_the_simulator_answers_the_fields_asked_for(api):
    api.configure(messaging_tier="TIER_10K", quality_rating="YELLOW")
    answer = requests.get(
        api.phone_number_url("1065"),
        params={"fields": "quality_rating,whatsapp_business_manager_messaging_limit"},
        headers=api.auth_headers,
        timeout=5,
    ).json()
    assert answer == {
        "id": "1065",
        "quality_rating": "YELLOW",
        "whatsapp_business_manager_messaging_limit": "TIER_10K",
    }


def test_sync_sets_the_portfolio_tier_and_the_budget_follows(api, portfolio_numbers, capsys):
    portfolio, numbers = portfolio_numbers
    api.configure(messaging_tier="TIER_2K")

    call_command("sync_numbers")

    portfolio.refresh_from_db()
    assert (portfolio.messaging_tier, portfolio.tier_source) == ("TIER_2K", TierSource.GRAPH)
    for number in numbers:
        number.refresh_from_db()
        assert number.messaging_tier == "TIER_2K" and number.quality_rating == "GREEN"
        assert number.verified_name == "Simulated Business" and number.synced_at is not None
    # The first reading replaces a default guess: learned, not announced as a change.
    assert not NumberChange.objects.exists()
    ledger = budget.ledger_for(numbers[0].pk)
    assert ledger.limit == 2000
    now = timezone.now()
    phones = [factories.e164(n) for n in range(300)]
    assert len(budget.ledgers().admit(ledger, phones, now, judging=[]).admitted) == 300
    assert budget.left([ledger], now)[ledger.key] == 1700
    assert "2 number(s) synced" in capsys.readouterr().out

    call_command("sync_numbers")  # the same answer again: nothing changes
    assert not NumberChange.objects.exists()

    api.configure(messaging_tier="TIER_250")
    call_command("sync_numbers")

    portfolio.refresh_from_db()
    assert portfolio.messaging_tier == "TIER_250"
    # One change, the portfolio's, however many of its numbers reported it.
    change = NumberChange.objects.get()
    assert (change.portfolio_id, change.old, change.new, change.direction) == (
        portfolio.pk,
        "TIER_2K",
        "TIER_250",
        "down",
    )
    ledger = budget.ledger_for(numbers[0].pk)
    assert ledger.limit == 250
    # 300 already reached this window: nobody new until they leave it; old ones still go.
    later = now + timedelta(seconds=1)
    refused = budget.ledgers().admit(ledger, [factories.e164(999)], later, judging=[])
    assert refused.admitted == set() and refused.next_free is not None
    again = budget.ledgers().admit(ledger, phones[:1], later, judging=[])
    assert again.admitted == {phones[0]}
    assert budget.left([ledger], later)[ledger.key] == 0


def test_a_number_that_cannot_be_read_keeps_its_values_and_says_why(api, portfolio_numbers, capsys):
    _portfolio, (good, bad) = portfolio_numbers
    api.configure(messaging_tier="TIER_10K", numbers={bad.phone_number_id: {"error": 100}})

    with pytest.raises(CommandError, match="1 of 2 number"):
        call_command("sync_numbers")

    good.refresh_from_db()
    bad.refresh_from_db()
    assert good.messaging_tier == "TIER_10K" and good.sync_error == ""
    assert bad.messaging_tier == "" and bad.synced_at is None
    assert "error 100" in bad.sync_error
    assert f"could not read {bad.phone_number_id}: error 100" in capsys.readouterr().err


def test_a_bad_token_fails_every_number_clearly(api, sender, settings):
    settings.WHATSAPP_ACCESS_TOKEN = "wrong"
    with pytest.raises(CommandError, match="1 of 1 number"):
        call_command("sync_numbers", sender.phone_number_id)
    sender.refresh_from_db()
    assert "error 190" in sender.sync_error


def test_an_unknown_number_id_is_refused_before_any_request(api, sender):
    with pytest.raises(CommandError, match="no sender number with id 999"):
        call_command("sync_numbers", "999")
    assert api.stats()["requests"] == 0


def test_a_red_number_pauses_its_campaigns_once(api, sender):
    campaign = factories.CampaignFactory(sender=sender, status=Campaign.Status.RUNNING)
    api.configure(numbers={sender.phone_number_id: {"quality_rating": "RED"}})

    call_command("sync_numbers")

    sender.refresh_from_db()
    campaign.refresh_from_db()
    assert sender.quality_rating == SenderNumber.Quality.RED
    assert campaign.status == Campaign.Status.PAUSED and "quality RED" in campaign.pause_reason
    # Staff resume while it is still RED: the next sync does not pause it again.
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.RUNNING)
    call_command("sync_numbers")
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING


def test_a_raised_limit_makes_rows_waiting_for_budget_due_now(api, portfolio_numbers):
    _portfolio, (number, _) = portfolio_numbers
    campaign = factories.CampaignFactory(sender=number, status=Campaign.Status.RUNNING)
    later = timezone.now() + timedelta(hours=20)
    waiting = factories.OutboundMessageFactory(
        campaign=campaign,
        status=OutboundStatus.QUEUED,
        error_category=WAIT_BUDGET,
        next_attempt_at=later,
    )
    api.configure(messaging_tier="TIER_10K")

    call_command("sync_numbers")

    waiting.refresh_from_db()
    assert waiting.next_attempt_at <= timezone.now()

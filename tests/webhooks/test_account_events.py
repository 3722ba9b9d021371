import json
import logging

import pytest

from campaigns.models import Campaign, Portfolio, SenderNumber, TierSource
from messaging.models import NumberChange
from messaging.policy import budget
from tests.factories import (
    AccountFactory,
    CampaignFactory,
    CampaignTemplateFactory,
    SenderFactory,
    TemplateFactory,
)
from tests.webhooks.payloads import envelope, post
from webhooks.drain import drain

pytestmark = pytest.mark.django_db


def _deliver(client, body):
    assert post(client, json.dumps(body).encode()).status_code == 200
    drain()


def _campaign_with(template, status=Campaign.Status.RUNNING):
    campaign = CampaignFactory(status=status, sender=SenderFactory(account=template.account))
    CampaignTemplateFactory(campaign=campaign, template=template)
    return campaign


def test_a_paused_template_pauses_the_running_and_scheduled_campaigns_using_it(client, caplog):
    template = TemplateFactory(graph_id="1625063511800527")
    running, scheduled = _campaign_with(template), _campaign_with(template, "scheduled")
    unrelated = _campaign_with(TemplateFactory(account=template.account))
    body = envelope(
        "message_template_status_update",
        {
            "event": "PAUSED",
            "message_template_id": 1625063511800527,
            "message_template_name": template.name,
            "message_template_language": template.language,
            "reason": "LOW_QUALITY",
        },
        waba=template.account.waba_id,
    )
    with caplog.at_level(logging.WARNING):
        _deliver(client, body)
    template.refresh_from_db()
    assert template.status == "PAUSED"
    for campaign in (running, scheduled):
        campaign.refresh_from_db()
        assert campaign.status == "paused"
        assert "PAUSED" in campaign.pause_reason and "LOW_QUALITY" in campaign.pause_reason
    unrelated.refresh_from_db()
    assert unrelated.status == "running"
    assert "is PAUSED" in caplog.text


def test_a_template_of_another_account_is_untouched(client):
    template = TemplateFactory()
    campaign = _campaign_with(template)
    body = envelope(
        "message_template_status_update",
        {
            "event": "DISABLED",
            "message_template_name": template.name,
            "message_template_language": template.language,
        },
        waba="999",
    )
    _deliver(client, body)
    campaign.refresh_from_db()
    assert campaign.status == "running"


def test_a_red_template_quality_pauses_its_campaigns(client):
    template = TemplateFactory()
    campaign = _campaign_with(template)
    body = envelope(
        "message_template_quality_update",
        {
            "previous_quality_score": "GREEN",
            "new_quality_score": "RED",
            "message_template_name": template.name,
            "message_template_language": template.language,
        },
        waba=template.account.waba_id,
    )
    _deliver(client, body)
    campaign.refresh_from_db()
    assert campaign.status == "paused" and "RED" in campaign.pause_reason


def test_a_flagged_number_records_it_and_pauses_its_campaigns(client):
    sender = SenderFactory(display_number="+15550783881")
    campaign = CampaignFactory(sender=sender, status=Campaign.Status.RUNNING)
    other = CampaignFactory(status=Campaign.Status.RUNNING)
    body = envelope(
        "phone_number_quality_update",
        {"display_phone_number": "15550783881", "event": "FLAGGED", "current_limit": "TIER_1K"},
        waba=sender.account.waba_id,
    )
    _deliver(client, body)
    sender.refresh_from_db()
    campaign.refresh_from_db()
    other.refresh_from_db()
    assert sender.status == "FLAGGED" and sender.messaging_tier == "TIER_1K"
    assert sender.quality_rating == SenderNumber.Quality.RED
    assert sender.tier_source == TierSource.WEBHOOK
    assert campaign.status == "paused" and "FLAGGED" in campaign.pause_reason
    assert other.status == "running"


def test_a_limit_downgrade_lowers_the_budget_without_pausing(client):
    """The budget holds sends to the new limit on its own: nothing needs pausing."""
    sender = SenderFactory(display_number="+15550783881", messaging_tier="TIER_10K")
    campaign = CampaignFactory(sender=sender, status=Campaign.Status.RUNNING)
    value = {
        "display_phone_number": "15550783881",
        "event": "DOWNGRADE",
        "old_limit": "TIER_10K",
        "current_limit": "TIER_2K",
        "max_daily_conversations_per_business": "2000",
    }
    _deliver(client, envelope("phone_number_quality_update", value, waba=sender.account.waba_id))
    _deliver(client, envelope("phone_number_quality_update", value, waba=sender.account.waba_id))
    sender.refresh_from_db()
    campaign.refresh_from_db()
    assert sender.messaging_tier == "TIER_2K" and sender.status == "CONNECTED"
    assert budget.ledger_for(sender.pk).limit == 2000
    assert campaign.status == "running"
    change = NumberChange.objects.get()  # delivered twice, changed once
    assert (change.sender_id, change.old, change.new, change.direction, change.detail) == (
        sender.pk,
        "TIER_10K",
        "TIER_2K",
        "down",
        "DOWNGRADE",
    )


def test_a_throughput_upgrade_is_not_read_as_a_messaging_limit(client):
    sender = SenderFactory(display_number="+15550783881", messaging_tier="TIER_2K")
    value = {
        "display_phone_number": "15550783881",
        "event": "THROUGHPUT_UPGRADE",
        "current_limit": "TIER_UNLIMITED",
    }
    _deliver(client, envelope("phone_number_quality_update", value, waba=sender.account.waba_id))
    sender.refresh_from_db()
    assert sender.messaging_tier == "TIER_2K"


def _capability(waba: str, limit: int) -> dict:
    return envelope(
        "business_capability_update",
        {"max_daily_conversations_per_business": limit, "max_phone_numbers_per_business": 2},
        waba=waba,
    )


def test_business_capability_update_sets_the_portfolio_limit_idempotently(client):
    portfolio = Portfolio.objects.create(
        business_id="77", messaging_tier="TIER_10K", tier_source=TierSource.GRAPH
    )
    account = AccountFactory(portfolio=portfolio)
    first, second = SenderFactory.create_batch(2, account=account, messaging_tier="TIER_10K")

    for _ in range(2):  # Meta delivers it twice
        _deliver(client, _capability(account.waba_id, 250))

    portfolio.refresh_from_db()
    assert (portfolio.messaging_tier, portfolio.tier_source) == ("TIER_250", TierSource.WEBHOOK)
    assert budget.ledger_for(first.pk).limit == budget.ledger_for(second.pk).limit == 250
    assert set(SenderNumber.objects.values_list("messaging_tier", flat=True)) == {"TIER_250"}
    change = NumberChange.objects.get()
    assert (change.portfolio_id, change.direction, change.source) == (
        portfolio.pk,
        "down",
        TierSource.WEBHOOK,
    )

    _deliver(client, _capability(account.waba_id, -1))  # unlimited
    portfolio.refresh_from_db()
    assert portfolio.messaging_tier == "TIER_UNLIMITED"
    assert budget.ledger_for(first.pk).limit is None
    assert NumberChange.objects.latest("pk").direction == "up"


def test_business_capability_update_of_an_account_without_portfolio_sets_its_numbers(client):
    sender = SenderFactory(messaging_tier="TIER_2K")
    _deliver(client, _capability(sender.account.waba_id, 10000))
    sender.refresh_from_db()
    assert sender.messaging_tier == "TIER_10K"
    assert budget.ledger_for(sender.pk).limit == 10_000

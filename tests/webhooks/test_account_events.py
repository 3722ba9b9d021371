import json
import logging

import pytest

from campaigns.models import Campaign, SenderNumber
from tests.factories import CampaignFactory, CampaignTemplateFactory, SenderFactory, TemplateFactory
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


@pytest.mark.parametrize(("event", "status"), [("FLAGGED", "FLAGGED"), ("DOWNGRADE", "CONNECTED")])
def test_a_number_quality_drop_records_it_and_pauses_its_campaigns(client, event, status):
    sender = SenderFactory(display_number="+15550783881")
    campaign = CampaignFactory(sender=sender, status=Campaign.Status.RUNNING)
    other = CampaignFactory(status=Campaign.Status.RUNNING)
    body = envelope(
        "phone_number_quality_update",
        {"display_phone_number": "15550783881", "event": event, "current_limit": "TIER_1K"},
        waba=sender.account.waba_id,
    )
    _deliver(client, body)
    sender.refresh_from_db()
    campaign.refresh_from_db()
    other.refresh_from_db()
    assert sender.status == status and sender.messaging_tier == "TIER_1K"
    if event == "FLAGGED":
        assert sender.quality_rating == SenderNumber.Quality.RED
    assert campaign.status == "paused" and event in campaign.pause_reason
    assert other.status == "running"

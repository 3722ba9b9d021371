"""A campaign whose account's token failed does not start or resume: its first send would
answer 190 and pause it again. Staff replace the token and clear the failure first."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Campaign, WhatsAppAccount
from messaging import services
from messaging.campaign_import import RowsAudience
from messaging.campaign_import.service import create_campaign
from messaging.models import OutboundMessage
from tests import factories

pytestmark = pytest.mark.django_db

Status = Campaign.Status


@pytest.fixture
def failed_sender():
    sender = factories.SenderFactory()
    WhatsAppAccount.objects.filter(pk=sender.account_id).update(auth_failed_at=timezone.now())
    return sender


def clear_failure(sender) -> None:
    WhatsAppAccount.objects.filter(pk=sender.account_id).update(auth_failed_at=None)


def test_a_draft_does_not_start_and_says_why(failed_sender):
    campaign = factories.CampaignFactory(sender=failed_sender)
    with pytest.raises(services.TransitionError, match=r"token of business account .* failed"):
        services.start_campaign(campaign_id=campaign.pk)
    campaign.refresh_from_db()
    assert campaign.status == Status.DRAFT and campaign.started_at is None
    # Scheduling for later is fine: staff may replace the token meanwhile.
    at = timezone.now() + timedelta(hours=1)
    assert services.start_campaign(campaign_id=campaign.pk, at=at).status == Status.SCHEDULED
    clear_failure(failed_sender)
    assert services.start_campaign(campaign_id=campaign.pk).status == Status.RUNNING


def test_a_scheduled_start_that_comes_pauses_with_the_reason(failed_sender):
    campaign = factories.CampaignFactory(
        sender=failed_sender, status=Status.SCHEDULED, start_at=timezone.now()
    )
    other = factories.CampaignFactory(status=Status.SCHEDULED, start_at=timezone.now())
    assert sorted(services.start_due_campaigns()) == sorted([campaign.pk, other.pk])
    campaign.refresh_from_db()
    other.refresh_from_db()
    assert campaign.status == Status.PAUSED
    assert campaign.pause_reason.startswith("Not started: the token of business account")
    assert other.status == Status.RUNNING  # another account's campaign is not held up


def test_resume_is_refused_until_the_failure_is_cleared(failed_sender):
    campaign = factories.CampaignFactory(
        sender=failed_sender, status=Status.PAUSED, pause_reason="WhatsApp error 190"
    )
    with pytest.raises(services.TransitionError, match="cannot resume: the token"):
        services.resume_campaign(campaign_id=campaign.pk)
    assert Campaign.objects.get(pk=campaign.pk).status == Status.PAUSED
    clear_failure(failed_sender)
    assert services.resume_campaign(campaign_id=campaign.pk).status == Status.RUNNING


def test_an_import_told_to_start_now_is_refused_before_writing_anything(failed_sender):
    template = factories.TemplateFactory(account=failed_sender.account)
    rows = RowsAudience(
        [
            {"phone": "+14155550101", "var1": "Ana", "var2": "A1"},
            {"phone": "+14155550102", "var1": "Bo", "var2": "B2"},
        ]
    )
    with pytest.raises(ValueError, match="Cannot start now: the token of business account"):
        create_campaign(
            name="Now",
            audience=rows,
            sender=failed_sender,
            templates=[(template, 1)],
            start_now=True,
        )
    assert not Campaign.objects.filter(name="Now").exists()
    assert OutboundMessage.objects.count() == 0
    # A draft of the same audience is fine.
    rows = RowsAudience(
        [
            {"phone": "+14155550101", "var1": "Ana", "var2": "A1"},
            {"phone": "+14155550102", "var1": "Bo", "var2": "B2"},
        ]
    )
    result = create_campaign(
        name="Later", audience=rows, sender=failed_sender, templates=[(template, 1)]
    )
    assert result.queued == 2 and result.campaign.status == Status.DRAFT

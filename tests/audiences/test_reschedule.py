"""Reschedule a scheduled campaign, schedule a draft, send a scheduled one back to draft."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign
from messaging.services import (
    TransitionError,
    reschedule_campaign,
    return_to_draft,
    start_due_campaigns,
)
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_scheduled_campaign_moves_and_starts_at_its_new_time():
    now = timezone.now()
    campaign = factories.CampaignFactory(status="scheduled", start_at=now + timedelta(hours=1))
    reschedule_campaign(campaign_id=campaign.pk, at=now + timedelta(hours=3))
    campaign.refresh_from_db()
    assert (campaign.status, campaign.start_at) == ("scheduled", now + timedelta(hours=3))
    assert start_due_campaigns(now=now + timedelta(hours=2)) == []
    assert start_due_campaigns(now=now + timedelta(hours=3)) == [campaign.pk]


def test_a_draft_can_be_scheduled_and_a_scheduled_one_sent_back_to_draft():
    campaign = factories.CampaignFactory()
    at = timezone.now() + timedelta(days=1)
    assert reschedule_campaign(campaign_id=campaign.pk, at=at).status == "scheduled"
    back = return_to_draft(campaign_id=campaign.pk)
    assert (back.status, back.start_at) == ("draft", None)
    assert start_due_campaigns(now=at + timedelta(hours=1)) == []


@pytest.mark.parametrize("status", ["running", "paused", "completed", "cancelled"])
def test_only_drafts_and_scheduled_campaigns_are_rescheduled(status):
    campaign = factories.CampaignFactory(status=status)
    with pytest.raises(TransitionError, match="only a draft or scheduled"):
        reschedule_campaign(campaign_id=campaign.pk, at=timezone.now() + timedelta(hours=1))
    if status != "scheduled":
        with pytest.raises(TransitionError):
            return_to_draft(campaign_id=campaign.pk)


def test_a_start_in_the_past_is_refused():
    campaign = factories.CampaignFactory(status="scheduled", start_at=timezone.now())
    with pytest.raises(TransitionError, match="in the past"):
        reschedule_campaign(campaign_id=campaign.pk, at=timezone.now() - timedelta(minutes=1))


def test_admin_reschedule_page_and_back_to_draft_button(admin_client):
    start = timezone.now() + timedelta(hours=1)
    campaign = factories.CampaignFactory(status="scheduled", start_at=start)
    page = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    html = page.content.decode()
    assert reverse("admin:campaigns_campaign_reschedule", args=[campaign.pk]) in html
    assert reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "draft"]) in html

    url = reverse("admin:campaigns_campaign_reschedule", args=[campaign.pk])
    past = admin_client.post(url, {"start_at": "2000-01-01T10:00"})
    assert "The start time is in the past" in past.content.decode()
    later = timezone.localtime(start + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    response = admin_client.post(url, {"start_at": later})
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert timezone.localtime(campaign.start_at).strftime("%Y-%m-%dT%H:%M") == later

    admin_client.post(reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "draft"]))
    assert Campaign.objects.get(pk=campaign.pk).status == "draft"

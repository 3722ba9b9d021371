import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import WARNING, get_messages
from django.urls import reverse

from campaigns.models import Campaign, CampaignTemplate
from messaging.models import OutboundMessage, OutboundStatus
from tests import factories

pytestmark = pytest.mark.django_db

URL = reverse("admin:campaigns_campaign_changelist")
Status = Campaign.Status


def _act(client, action, campaigns, **extra):
    data = {"action": action, ACTION_CHECKBOX_NAME: [c.pk for c in campaigns], **extra}
    return client.post(URL, data, follow=True)


def _messages(response):
    return [(m.level, m.message) for m in get_messages(response.wsgi_request)]


def _status(campaign):
    campaign.refresh_from_db()
    return campaign.status


def test_start_action_starts_drafts(admin_client):
    drafts = factories.CampaignFactory.create_batch(2)
    response = _act(admin_client, "start_selected", drafts)
    assert [_status(c) for c in drafts] == [Status.RUNNING, Status.RUNNING]
    assert any("Started 2 campaigns" in text for _, text in _messages(response))


def test_pause_and_resume_actions(admin_client):
    campaign = factories.CampaignFactory(status=Status.RUNNING)
    _act(admin_client, "pause_selected", [campaign])
    assert _status(campaign) == Status.PAUSED
    _act(admin_client, "resume_selected", [campaign])
    assert _status(campaign) == Status.RUNNING


def test_resume_of_a_completed_campaign_is_refused_naming_it_and_its_status(admin_client):
    done = factories.CampaignFactory(name="Old promo", status=Status.COMPLETED)
    paused = factories.CampaignFactory(name="Held promo", status=Status.PAUSED)

    response = _act(admin_client, "resume_selected", [done, paused])

    assert _status(done) == Status.COMPLETED
    assert _status(paused) == Status.RUNNING
    messages = _messages(response)
    assert (WARNING, "Could not resume “Old promo”: it is Completed.") in messages
    assert any(text == "Resumed 1 campaign." for _, text in messages)


def test_cancel_asks_for_confirmation_before_cancelling(admin_client):
    campaign = factories.CampaignFactory(name="To cancel", status=Status.RUNNING)
    queued = factories.OutboundMessageFactory(campaign=campaign)

    page = _act(admin_client, "cancel_selected", [campaign])

    assert page.status_code == 200
    assert "Cancel these campaigns?" in page.content.decode()
    assert "To cancel" in page.content.decode()
    assert _status(campaign) == Status.RUNNING

    _act(admin_client, "cancel_selected", [campaign], post="yes")

    assert _status(campaign) == Status.CANCELLED
    queued.refresh_from_db()
    assert queued.status == OutboundStatus.CANCELLED


def test_cancel_of_a_cancelled_campaign_is_refused(admin_client):
    campaign = factories.CampaignFactory(name="Gone", status=Status.CANCELLED)
    response = _act(admin_client, "cancel_selected", [campaign], post="yes")
    assert (WARNING, "Could not cancel “Gone”: it is Cancelled.") in _messages(response)


def test_duplicate_action_creates_a_draft_with_the_same_queue(admin_client, sender, template):
    source = factories.CampaignFactory(
        sender=sender, name="Source", status=Status.COMPLETED, total=2
    )
    CampaignTemplate.objects.create(campaign=source, template=template, weight=3)
    for _ in range(2):
        factories.OutboundMessageFactory(
            campaign=source, template=template, status=OutboundStatus.READ
        )

    response = _act(admin_client, "duplicate_selected", [source])

    copy = Campaign.objects.exclude(pk=source.pk).get()
    assert copy.name == "Source (copy)" and copy.status == Status.DRAFT and copy.total == 2
    assert copy.created_by is not None
    assert list(copy.template_links.values_list("template_id", "weight")) == [(template.pk, 3)]
    assert OutboundMessage.objects.filter(campaign=copy, status=OutboundStatus.QUEUED).count() == 2
    assert any("Duplicated “Source”" in text for _, text in _messages(response))


def test_change_page_buttons_pause_and_cancel_after_confirmation(admin_client):
    campaign = factories.CampaignFactory(status=Status.RUNNING)
    pause_url = reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "pause"])
    cancel_url = reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "cancel"])

    assert admin_client.get(pause_url).status_code == 405
    admin_client.post(pause_url)
    assert _status(campaign) == Status.PAUSED

    confirm = admin_client.get(cancel_url)
    assert confirm.status_code == 200 and _status(campaign) == Status.PAUSED
    # The confirmation posts the list action back to the changelist.
    _act(admin_client, "cancel_selected", [campaign], post="yes")
    assert _status(campaign) == Status.CANCELLED


def test_change_page_button_refuses_an_illegal_move(admin_client):
    campaign = factories.CampaignFactory(name="Finished", status=Status.COMPLETED)
    url = reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "start"])
    response = admin_client.post(url, follow=True)
    assert (WARNING, "Could not start “Finished”: it is Completed.") in _messages(response)
    assert _status(campaign) == Status.COMPLETED

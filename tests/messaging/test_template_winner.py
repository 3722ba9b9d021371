"""The automatic template winner: off by default; after the test share the campaign waits,
then the better template (two-proportion test, minimum sample) gets the queued rows, or the
rest goes out as split after the longest wait; the decision is recorded with its figures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.utils import timezone

from campaigns.models import Campaign, CampaignTemplate
from messaging import winner
from messaging.models import OutboundMessage, OutboundStatus
from messaging.services import is_manual_pause
from tests import factories

pytestmark = pytest.mark.django_db
S = OutboundStatus


@pytest.fixture
def split(sender, account):
    """Two templates, 200 delivered each (A read 120, B read 60), 400 rows still queued."""
    owner = User.objects.create_user("owner", password="x", is_staff=True)
    body = [{"type": "BODY", "text": "Hey {{1}}!"}]
    a = factories.TemplateFactory(account=account, name="variant_a", components=body)
    b = factories.TemplateFactory(account=account, name="variant_b", components=body)
    campaign = factories.CampaignFactory(
        sender=sender,
        status=Campaign.Status.RUNNING,
        started_at=timezone.now() - timedelta(hours=1),
        created_by=owner,
        winner_measure=Campaign.WinnerMeasure.READ,
        winner_test_share=50,
        winner_min_delivered=150,
        winner_wait_minutes=60,
        total=800,
        sent=400,
        delivered=400,
        read=180,
    )
    for position, template in enumerate((a, b)):
        CampaignTemplate.objects.create(campaign=campaign, template=template, position=position)
    now = timezone.now()
    for template, reads in ((a, 120), (b, 60)):
        factories.OutboundMessageFactory.create_batch(
            reads, campaign=campaign, template=template, status=S.READ,
            accepted_at=now, delivered_at=now, read_at=now,
        )  # fmt: skip
        factories.OutboundMessageFactory.create_batch(
            200 - reads, campaign=campaign, template=template, status=S.DELIVERED,
            accepted_at=now, delivered_at=now,
        )  # fmt: skip
    for n in range(400):
        contact = factories.ContactFactory(attributes={"city": f"C{n}"})
        factories.OutboundMessageFactory(
            campaign=campaign, template=(a, b)[n % 2], status=S.QUEUED, contact=contact
        )
    campaign.a, campaign.b = a, b
    return campaign


def queued_templates(campaign) -> set[int]:
    rows = OutboundMessage.objects.filter(campaign=campaign, status=S.QUEUED)
    return set(rows.values_list("template_id", flat=True))


def test_off_by_default(sender):
    campaign = factories.CampaignFactory(sender=sender, status=Campaign.Status.RUNNING)
    assert campaign.winner_measure == ""
    assert campaign.pk not in winner.deciding()
    assert winner.check_winner(campaign_id=campaign.pk) is None


def test_the_better_template_gets_the_queued_rows_and_the_decision_is_recorded(split):
    assert winner.check_winners() == 1
    split.refresh_from_db()
    assert queued_templates(split) == {split.a.pk}
    assert split.winner_decided_at is not None
    assert "Automatic winner variant_a" in split.winner_decision
    assert "variant_a 120/200 = 60.0%; variant_b 60/200 = 30.0%" in split.winner_decision
    assert "400 queued messages moved" not in split.winner_decision  # B's half moved only
    assert "200 queued messages moved" in split.winner_decision
    entry = LogEntry.objects.get(object_id=str(split.pk))
    assert entry.user.username == "owner" and "95% confidence" in entry.get_change_message()
    # Decided once: later checks leave it alone.
    assert split.pk not in winner.deciding()


def test_too_small_a_sample_waits_after_the_share_then_the_rest_goes_as_split(split):
    Campaign.objects.filter(pk=split.pk).update(winner_min_delivered=500)
    assert winner.check_winner(campaign_id=split.pk) is None
    split.refresh_from_db()
    # Half the rows are out (the test share): the campaign waits, a planned pause (no alert).
    assert split.status == Campaign.Status.PAUSED
    assert split.pause_reason == winner.WINNER_PAUSE_REASON and is_manual_pause(split.pause_reason)
    assert winner.check_winner(campaign_id=split.pk) is None  # still within the wait
    later = timezone.now() + timedelta(minutes=61)
    text = winner.check_winner(campaign_id=split.pk, now=later)
    assert text.startswith("No template winner by read rate after 60 minutes")
    assert "fewer than 500 delivered per template" in text
    split.refresh_from_db()
    assert split.status == Campaign.Status.RUNNING and split.pause_reason == ""
    assert queued_templates(split) == {split.a.pk, split.b.pk}


def test_a_decision_while_paused_for_the_test_resumes_the_campaign(split):
    Campaign.objects.filter(pk=split.pk).update(winner_min_delivered=500)
    winner.check_winner(campaign_id=split.pk)
    Campaign.objects.filter(pk=split.pk).update(winner_min_delivered=150)  # more came in
    assert winner.check_winner(campaign_id=split.pk).startswith("Automatic winner variant_a")
    split.refresh_from_db()
    assert split.status == Campaign.Status.RUNNING
    assert queued_templates(split) == {split.a.pk}


def test_a_pause_by_staff_is_not_lifted(split):
    Campaign.objects.filter(pk=split.pk).update(
        status=Campaign.Status.PAUSED, pause_reason="Paused by staff"
    )
    assert winner.check_winner(campaign_id=split.pk) is None
    split.refresh_from_db()
    assert split.status == Campaign.Status.PAUSED and split.winner_decided_at is None
    assert queued_templates(split) == {split.a.pk, split.b.pk}

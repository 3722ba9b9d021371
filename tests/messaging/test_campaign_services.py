"""Campaign state changes: legal moves, refused moves, requeue and duplicate bookkeeping."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Campaign
from messaging.models import OutboundMessage, OutboundStatus
from messaging.services import (
    TransitionError,
    cancel_campaign,
    complete_if_finished,
    duplicate_campaign,
    pause_campaign,
    requeue_failed,
    resume_campaign,
    start_campaign,
)
from tests.engine.conftest import make_campaign

pytestmark = pytest.mark.django_db


def test_start_now_runs_and_start_later_schedules(sender, template):
    now_campaign = make_campaign(sender=sender, templates=[template], contacts=1, status="draft")
    later = make_campaign(sender=sender, templates=[template], contacts=1, status="draft")

    assert start_campaign(campaign_id=now_campaign.pk).status == Campaign.Status.RUNNING
    at = timezone.now() + timedelta(hours=2)
    scheduled = start_campaign(campaign_id=later.pk, at=at)
    assert (scheduled.status, scheduled.start_at) == (Campaign.Status.SCHEDULED, at)


@pytest.mark.parametrize(
    ("status", "verb"),
    [("completed", resume_campaign), ("cancelled", pause_campaign), ("draft", resume_campaign)],
)
def test_illegal_moves_are_refused_and_change_nothing(sender, template, status, verb):
    campaign = make_campaign(sender=sender, templates=[template], contacts=1, status=status)
    with pytest.raises(TransitionError):
        verb(campaign_id=campaign.pk)
    campaign.refresh_from_db()
    assert campaign.status == status


def test_cancel_cancels_only_what_was_not_sent(sender, template):
    campaign = make_campaign(sender=sender, templates=[template], contacts=4)
    first = campaign.messages.order_by("id").first()
    OutboundMessage.objects.filter(pk=first.pk).update(status=OutboundStatus.DELIVERED)

    cancel_campaign(campaign_id=campaign.pk)

    assert dict(campaign.messages.values_list("id", "status")) == {
        m: (OutboundStatus.DELIVERED if m == first.pk else OutboundStatus.CANCELLED)
        for m in campaign.messages.values_list("id", flat=True)
    }


def test_completion_waits_for_every_row_to_be_final(sender, template):
    campaign = make_campaign(sender=sender, templates=[template], contacts=2)
    campaign.messages.update(status=OutboundStatus.ACCEPTED)
    OutboundMessage.objects.filter(pk=campaign.messages.first().pk).update(
        status=OutboundStatus.UNKNOWN
    )
    assert complete_if_finished(campaign_id=campaign.pk) is False

    campaign.messages.update(status=OutboundStatus.READ)
    assert complete_if_finished(campaign_id=campaign.pk) is True
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED


def test_requeue_takes_webhook_failures_out_of_sent_and_failed(sender, template):
    campaign = make_campaign(sender=sender, templates=[template], contacts=3)
    rows = list(campaign.messages.order_by("id"))
    # One refused at send time; one accepted by the API and then failed by a webhook.
    OutboundMessage.objects.filter(pk=rows[0].pk).update(status=OutboundStatus.FAILED)
    OutboundMessage.objects.filter(pk=rows[1].pk).update(
        status=OutboundStatus.FAILED, wamid="wamid.old", accepted_at=timezone.now()
    )
    Campaign.objects.filter(pk=campaign.pk).update(status="completed", sent=1, failed=2)

    assert requeue_failed(campaign_id=campaign.pk) == 2

    campaign.refresh_from_db()
    assert (campaign.status, campaign.sent, campaign.failed) == ("running", 0, 0)
    requeued = OutboundMessage.objects.get(pk=rows[1].pk)
    assert (requeued.status, requeued.wamid, requeued.attempts) == (OutboundStatus.RETRY, None, 0)


def test_duplicate_queues_the_same_contacts_in_the_same_order(sender, template):
    source = make_campaign(sender=sender, templates=[template], contacts=5, status="completed")
    source.messages.update(status=OutboundStatus.READ, wamid=None)

    copy = duplicate_campaign(campaign_id=source.pk)

    assert (copy.status, copy.total) == (Campaign.Status.DRAFT, 5)
    assert list(copy.messages.order_by("id").values_list("contact_id", flat=True)) == list(
        source.messages.order_by("id").values_list("contact_id", flat=True)
    )
    assert set(copy.messages.values_list("status", flat=True)) == {OutboundStatus.QUEUED}

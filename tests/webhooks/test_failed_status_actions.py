from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Campaign, Suppression
from messaging.models import OutboundStatus as S
from tests.factories import CampaignFactory, OutboundMessageFactory
from tests.webhooks.payloads import accepted_rows, counters, recount, status, statuses_body
from webhooks.payload import parse
from webhooks.statuses import record_statuses

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sql_path")]


def _fail(row, code):
    record_statuses(events=parse(statuses_body([status(row.wamid, "failed", code=code)])).statuses)
    row.refresh_from_db()


def test_marketing_limit_requeues_the_row_24_hours_later_without_counting_a_failure():
    campaign = CampaignFactory(status=Campaign.Status.RUNNING)
    (row,) = accepted_rows(campaign, 1)
    wamid = row.wamid
    _fail(row, 131049)
    assert row.status == S.RETRY
    assert row.next_attempt_at >= timezone.now() + timedelta(hours=23, minutes=59)
    assert row.wamid is None and row.error_code == 131049
    assert row.error_category == "marketing_limit"
    # It left `sent` until the sender has it accepted again.
    assert counters(campaign) == {"sent": 0, "delivered": 0, "read": 0, "failed": 0}
    # A late status of the dead wamid moves nothing.
    record_statuses(events=parse(statuses_body([status(wamid, "delivered")])).statuses)
    row.refresh_from_db()
    assert row.status == S.RETRY


def test_marketing_limit_fails_the_row_when_the_campaign_expires_before_24_hours():
    campaign = CampaignFactory(valid_until=timezone.now() + timedelta(hours=5))
    (row,) = accepted_rows(campaign, 1)
    _fail(row, 131049)
    assert row.status == S.FAILED
    assert (
        counters(campaign)
        == recount(campaign)
        == {
            "sent": 1,
            "delivered": 0,
            "read": 0,
            "failed": 1,
        }
    )


def test_stopped_marketing_fails_suppresses_and_cancels_the_numbers_queued_messages():
    campaign = CampaignFactory()
    (row,) = accepted_rows(campaign, 1)
    queued = OutboundMessageFactory(contact=row.contact, status=S.QUEUED)
    _fail(row, 131050)
    queued.refresh_from_db()
    assert row.status == S.FAILED
    assert Suppression.objects.get(phone=row.phone).source == "api_error"
    assert queued.status == S.CANCELLED
    row.contact.refresh_from_db()
    assert row.contact.opted_out_at is not None


def test_undeliverable_fails_with_the_recipient_category():
    campaign = CampaignFactory()
    (row,) = accepted_rows(campaign, 1)
    _fail(row, 131026)
    assert (row.status, row.error_category) == (S.FAILED, "recipient")
    assert not Suppression.objects.exists()


# A spam signal puts the message back (the campaign is paused); a template error fails it.
@pytest.mark.parametrize(("code", "final"), [(131048, S.RETRY), (132015, S.FAILED)])
def test_spam_and_template_errors_pause_the_campaign(code, final):
    campaign = CampaignFactory(status=Campaign.Status.RUNNING)
    other = CampaignFactory(status=Campaign.Status.RUNNING, sender=campaign.sender)
    (row,) = accepted_rows(campaign, 1)
    _fail(row, code)
    campaign.refresh_from_db()
    other.refresh_from_db()
    assert row.status == final
    assert campaign.status == "paused" and str(code) in campaign.pause_reason
    assert other.status == "running"


def test_an_auth_error_pauses_every_campaign_of_the_account():
    campaign = CampaignFactory(status=Campaign.Status.RUNNING)
    other = CampaignFactory(status=Campaign.Status.SCHEDULED, sender=campaign.sender)
    (row,) = accepted_rows(campaign, 1)
    _fail(row, 190)
    assert Campaign.objects.filter(pk__in=[campaign.pk, other.pk], status="paused").count() == 2


def test_a_transient_failure_is_retried_with_backoff():
    campaign = CampaignFactory()
    (row,) = accepted_rows(campaign, 1)
    _fail(row, 131000)
    assert row.status == S.RETRY
    assert row.next_attempt_at > timezone.now()
    assert counters(campaign) == recount(campaign)

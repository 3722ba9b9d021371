import pytest
from django.utils import timezone

from messaging.models import OutboundStatus as S
from tests.factories import CampaignFactory, OutboundMessageFactory
from tests.webhooks.payloads import counters, recount, status, statuses_body
from webhooks.drain import drain
from webhooks.models import RawEvent, StatusLog
from webhooks.payload import parse
from webhooks.statuses import match_pending_statuses, record_statuses

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sql_path")]


def _apply(items):
    record_statuses(events=parse(statuses_body(items)).statuses)


@pytest.mark.parametrize("in_doubt", [S.SENDING, S.UNKNOWN])
def test_a_lost_send_answer_is_settled_by_callback_data(in_doubt):
    campaign = CampaignFactory()
    row = OutboundMessageFactory(campaign=campaign, status=in_doubt, claimed_at=timezone.now())
    _apply([status("wamid.LOST", "delivered", callback=f"out:{row.pk}")])
    row.refresh_from_db()
    assert (row.status, row.wamid) == (S.DELIVERED, "wamid.LOST")
    assert row.accepted_at is not None
    assert counters(campaign) == {"sent": 1, "delivered": 1, "read": 0, "failed": 0}
    assert StatusLog.objects.get().outbound_id == row.pk


def test_later_statuses_of_a_settled_row_match_by_its_new_wamid():
    campaign = CampaignFactory()
    row = OutboundMessageFactory(campaign=campaign, status=S.UNKNOWN)
    _apply([status("wamid.LOST", "sent", callback=f"out:{row.pk}")])
    _apply([status("wamid.LOST", "read")])
    row.refresh_from_db()
    assert row.status == S.READ
    assert (
        counters(campaign)
        == recount(campaign)
        == {
            "sent": 1,
            "delivered": 1,
            "read": 1,
            "failed": 0,
        }
    )


def test_callback_data_never_rewrites_a_row_that_has_another_wamid():
    campaign = CampaignFactory()
    row = OutboundMessageFactory(campaign=campaign, status=S.ACCEPTED, wamid="wamid.NEW")
    _apply([status("wamid.OLD", "delivered", callback=f"out:{row.pk}")])
    row.refresh_from_db()
    assert (row.status, row.wamid) == (S.ACCEPTED, "wamid.NEW")
    assert StatusLog.objects.get().outbound_id is None


def test_an_unknown_status_is_kept_and_matched_when_the_sender_records_the_wamid():
    campaign = CampaignFactory()
    row = OutboundMessageFactory(campaign=campaign, status=S.SENDING)
    _apply([status("wamid.EARLY", "delivered"), status("wamid.EARLY", "sent")])
    assert StatusLog.objects.filter(outbound__isnull=True).count() == 2
    # The sender records the accepted send (as it does: sent +1) and then asks us to match.
    type(row).objects.filter(pk=row.pk).update(
        status=S.ACCEPTED, wamid="wamid.EARLY", accepted_at=timezone.now()
    )
    type(campaign).objects.filter(pk=campaign.pk).update(sent=1)
    assert match_pending_statuses(wamids=["wamid.EARLY"]) == 2
    assert match_pending_statuses(wamids=["wamid.EARLY"]) == 0  # nothing applied twice
    row.refresh_from_db()
    assert row.status == S.DELIVERED
    assert counters(campaign) == {"sent": 1, "delivered": 1, "read": 0, "failed": 0}
    assert not StatusLog.objects.filter(outbound__isnull=True).exists()


def test_the_drain_loop_matches_statuses_whose_row_appeared_since():
    campaign = CampaignFactory()
    _apply([status("wamid.LATE", "read")])
    row = OutboundMessageFactory(campaign=campaign, status=S.ACCEPTED, wamid="wamid.LATE")
    type(campaign).objects.filter(pk=campaign.pk).update(sent=1)
    assert not RawEvent.objects.exists()
    drain()
    row.refresh_from_db()
    assert row.status == S.READ
    assert counters(campaign) == {"sent": 1, "delivered": 1, "read": 1, "failed": 0}


def test_statuses_of_no_known_message_stay_unmatched_without_error():
    _apply([status("wamid.FOREIGN", "sent", callback="someone-else:1"), status("x", "played")])
    drain()
    assert StatusLog.objects.filter(outbound__isnull=True).count() == 2

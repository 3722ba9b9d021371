import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import WARNING, get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from campaigns.models import Campaign
from messaging.errors import ERROR_TABLE
from messaging.models import OutboundStatus
from tests import factories

pytestmark = pytest.mark.django_db

URL = reverse("admin:messaging_outboundmessage_changelist")


def _messages(response):
    return [(m.level, m.message) for m in get_messages(response.wsgi_request)]


def test_queue_list_never_counts_the_whole_table(admin_client):
    campaign = factories.CampaignFactory()
    factories.OutboundMessageFactory.create_batch(3, campaign=campaign)
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(URL)
    assert response.status_code == 200
    counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts, "the paginator still counts, within a cap"
    assert all("LIMIT" in sql.upper() for sql in counts), counts


def test_queue_list_query_count_does_not_grow_with_rows(admin_client, django_assert_num_queries):
    campaign = factories.CampaignFactory()
    factories.OutboundMessageFactory(campaign=campaign)
    admin_client.get(URL)
    with CaptureQueriesContext(connection) as small:
        admin_client.get(URL)
    other = factories.CampaignFactory()
    factories.OutboundMessageFactory.create_batch(30, campaign=other)
    with django_assert_num_queries(len(small.captured_queries)):
        admin_client.get(URL)


def test_queue_rows_are_read_only(admin_client):
    message = factories.OutboundMessageFactory(error_code=131026, error_detail="undeliverable")
    change_url = reverse("admin:messaging_outboundmessage_change", args=[message.pk])
    page = admin_client.get(change_url)
    assert page.status_code == 200
    assert b"131026" in page.content and b"undeliverable" in page.content
    assert b'name="_save"' not in page.content
    assert admin_client.get(reverse("admin:messaging_outboundmessage_add")).status_code == 403
    assert admin_client.post(change_url, {"phone": "+10000000000"}).status_code == 403


def test_queue_list_filters_by_status_category_and_campaign(admin_client):
    factories.OutboundMessageFactory(
        status=OutboundStatus.FAILED, error_category="spam", phone="+14155550001"
    )
    queued = factories.OutboundMessageFactory(phone="+14155550002")

    by_status = admin_client.get(URL, {"status__exact": OutboundStatus.FAILED}).content
    by_category = admin_client.get(URL, {"error_category": "spam"}).content
    by_campaign = admin_client.get(URL, {"campaign__id__exact": queued.campaign_id}).content
    by_phone = admin_client.get(URL, {"q": "+14155550001"}).content

    assert b"+14155550001" in by_status and b"+14155550002" not in by_status
    assert b"+14155550001" in by_category and b"+14155550002" not in by_category
    assert b"+14155550002" in by_campaign and b"+14155550001" not in by_campaign
    assert b"+14155550001" in by_phone and b"+14155550002" not in by_phone


def test_requeue_confirms_then_puts_failed_rows_back_and_fixes_the_counter(admin_client):
    campaign = factories.CampaignFactory(status=Campaign.Status.COMPLETED, total=3, failed=2)
    failed = factories.OutboundMessageFactory.create_batch(
        2,
        campaign=campaign,
        status=OutboundStatus.FAILED,
        error_code=131026,
        error_category="recipient",
        attempts=4,
    )
    read = factories.OutboundMessageFactory(campaign=campaign, status=OutboundStatus.READ)
    selected = [m.pk for m in [*failed, read]]

    confirm = admin_client.post(URL, {"action": "requeue_selected", ACTION_CHECKBOX_NAME: selected})
    assert confirm.status_code == 200
    assert "Re-queue messages?" in confirm.content.decode()
    failed[0].refresh_from_db()
    assert failed[0].status == OutboundStatus.FAILED

    done = admin_client.post(
        URL,
        {"action": "requeue_selected", ACTION_CHECKBOX_NAME: selected, "post": "yes"},
        follow=True,
    )

    for message in failed:
        message.refresh_from_db()
        assert (message.status, message.error_code, message.attempts) == (
            OutboundStatus.RETRY,
            None,
            0,
        )
    read.refresh_from_db()
    assert read.status == OutboundStatus.READ
    campaign.refresh_from_db()
    assert campaign.failed == 0 and campaign.status == Campaign.Status.RUNNING
    assert any("Re-queued 2 message(s) in 1 campaign(s)" in t for _, t in _messages(done))


def test_requeue_of_rows_that_did_not_fail_says_so(admin_client):
    sent = factories.OutboundMessageFactory(status=OutboundStatus.SENT)
    response = admin_client.post(
        URL,
        {"action": "requeue_selected", ACTION_CHECKBOX_NAME: [sent.pk], "post": "yes"},
        follow=True,
    )
    assert (WARNING, "None of the selected messages is failed or held.") in _messages(response)


def test_error_table_page_lists_every_code_with_category_and_action(admin_client):
    response = admin_client.get(reverse("admin:messaging_outboundmessage_errors"))
    page = response.content.decode()
    assert response.status_code == 200
    for code, rule in ERROR_TABLE.items():
        assert f"<td>{code}</td><td>{rule.category}</td><td>{rule.action}</td>" in page
    assert "User stopped marketing messages" in page
    assert (
        reverse("admin:messaging_outboundmessage_errors") in admin_client.get(URL).content.decode()
    )


def test_error_table_needs_staff_login(client):
    response = client.get(reverse("admin:messaging_outboundmessage_errors"))
    assert response.status_code == 302


def test_queue_list_shows_rows_held_for_webhook_evidence_and_why(admin_client):
    from messaging.evidence import HELD_DETAIL, HELD_FOR_EVIDENCE

    factories.OutboundMessageFactory(
        status=OutboundStatus.UNKNOWN,
        error_category=HELD_FOR_EVIDENCE,
        error_detail=HELD_DETAIL,
        phone="+14155550003",
        attempts=1,
        lost_claims=2,
    )
    factories.OutboundMessageFactory(status=OutboundStatus.UNKNOWN, phone="+14155550004")

    page = admin_client.get(URL, {"error_category": HELD_FOR_EVIDENCE}).content.decode()

    assert "+14155550003" in page and "+14155550004" not in page
    assert "in doubt, held: no webhooks for its number" in page  # the filter's choice
    assert HELD_DETAIL in page
    assert "+2 lost" in page  # two claims lost with dead workers, apart from the one try

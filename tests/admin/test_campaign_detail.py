import csv
import io

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, CampaignTemplate, ImportRejection
from messaging.models import OutboundStatus
from tests import factories

pytestmark = pytest.mark.django_db


def _change_url(campaign):
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def test_started_campaign_page_is_for_reading_and_acting(admin_client, sender, template):
    campaign = factories.CampaignFactory(
        sender=sender,
        status=Campaign.Status.RUNNING,
        total=6,
        sent=3,
        delivered=2,
        read=1,
        failed=2,
        started_at=timezone.now() - timezone.timedelta(seconds=30),
    )
    CampaignTemplate.objects.create(campaign=campaign, template=template)

    page = admin_client.get(_change_url(campaign)).content.decode()

    assert 'name="_save"' not in page and "deletelink" not in page
    assert 'id="funnel-accepted"' in page and ">3</td>" in page
    assert "delivered ÷ accepted" in page  # each figure's definition is on the page
    assert "2 (33.3%)" in page  # failed of queued
    assert reverse("admin:campaigns_campaign_live", args=[campaign.pk]) in page
    assert reverse("admin:messaging_outboundmessage_errors") in page
    assert reverse("admin:campaigns_campaign_rejections", args=[campaign.pk]) in page
    assert reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "pause"]) in page
    assert reverse("admin:campaigns_campaign_transition", args=[campaign.pk, "start"]) not in page
    assert admin_client.post(_change_url(campaign), {"name": "x"}).status_code == 405
    delete = reverse("admin:campaigns_campaign_delete", args=[campaign.pk])
    assert admin_client.get(delete).status_code == 403


def test_change_page_query_count_does_not_grow_with_the_queue(
    admin_client, sender, template, django_assert_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    campaign = factories.CampaignFactory(
        sender=sender, status=Campaign.Status.RUNNING, started_at=timezone.now()
    )
    CampaignTemplate.objects.create(campaign=campaign, template=template)
    factories.OutboundMessageFactory(campaign=campaign, template=template)
    admin_client.get(_change_url(campaign))
    with CaptureQueriesContext(connection) as small:
        admin_client.get(_change_url(campaign))
    for status in (
        OutboundStatus.SENT,
        OutboundStatus.FAILED,
        OutboundStatus.HELD,
        OutboundStatus.RETRY,
    ):
        factories.OutboundMessageFactory.create_batch(
            3, campaign=campaign, template=template, status=status, error_category="spam"
        )
    with django_assert_num_queries(len(small.captured_queries)):
        admin_client.get(_change_url(campaign))


def test_only_name_priority_validity_and_template_test_are_editable_on_a_draft(
    admin_client, sender
):
    campaign = factories.CampaignFactory(sender=sender, name="Before", total=10)
    response = admin_client.post(
        _change_url(campaign),
        {
            "name": "After",
            "priority": 5,
            "valid_until_0": "",
            "valid_until_1": "",
            "status": "completed",
            "sent": 999,
            "total": 1,
            "template_links-TOTAL_FORMS": 0,
            "template_links-INITIAL_FORMS": 0,
            "winner_measure": "read rate",
            "winner_test_share": 10,
            "winner_min_delivered": 300,
            "winner_wait_minutes": 60,
            "winner_decision": "forged",
        },
    )
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.name, campaign.priority) == ("After", 5)
    assert (campaign.winner_measure, campaign.winner_test_share) == ("read rate", 10)
    assert campaign.winner_decision == ""  # the winner's to write, never a form's
    assert campaign.status == Campaign.Status.DRAFT and campaign.sent == 0


def test_rejection_report_downloads_every_rejection_as_csv(admin_client):
    campaign = factories.CampaignFactory()
    ImportRejection.objects.bulk_create(
        [
            ImportRejection(campaign=campaign, row_number=7, value="12", reason="too short"),
            ImportRejection(campaign=campaign, row_number=3, value='a,"b"', reason="no phone"),
        ]
        + [
            ImportRejection(campaign=campaign, row_number=100 + i, value="x", reason="bad")
            for i in range(2500)
        ]
    )
    other = factories.CampaignFactory()
    ImportRejection.objects.create(campaign=other, row_number=2, value="z", reason="elsewhere")

    response = admin_client.get(reverse("admin:campaigns_campaign_rejections", args=[campaign.pk]))

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert f"campaign-{campaign.pk}-rejections.csv" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["row_number", "value", "reason"]
    assert rows[1] == ["3", 'a,"b"', "no phone"]
    assert rows[2] == ["7", "12", "too short"]
    assert len(rows) == 1 + 2502
    assert all(row[2] != "elsewhere" for row in rows)


def test_rejection_report_needs_staff_login(client):
    campaign = factories.CampaignFactory()
    response = client.get(reverse("admin:campaigns_campaign_rejections", args=[campaign.pk]))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]

"""Webhook event lists stay cheap and honest: constant queries per page, a capped count that
says so, and the raw events list computes sizes with portable SQL."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns.admin_helpers import CappedCountPaginator
from tests import factories
from webhooks.models import RawEvent, StatusLog

pytestmark = pytest.mark.django_db
STATUS_LOGS = reverse("admin:webhooks_statuslog_changelist")


def _logs(n, campaign, template, start=0):
    rows = factories.OutboundMessageFactory.create_batch(n, campaign=campaign, template=template)
    StatusLog.objects.bulk_create(
        StatusLog(
            wamid=f"wamid.{start + i}",
            status="delivered",
            timestamp=timezone.now(),
            outbound=row,
        )
        for i, row in enumerate(rows)
    )


def test_status_log_page_costs_the_same_with_100_rows_as_with_2(admin_client, sender, template):
    campaign = factories.CampaignFactory(sender=sender)
    _logs(2, campaign, template)
    admin_client.get(STATUS_LOGS)
    with CaptureQueriesContext(connection) as small:
        admin_client.get(STATUS_LOGS)
    _logs(120, campaign, template, start=10)
    with CaptureQueriesContext(connection) as big:
        page = admin_client.get(STATUS_LOGS).content.decode()
    assert len(big.captured_queries) == len(small.captured_queries) <= 10
    row = StatusLog.objects.order_by("-id").first()
    url = reverse("admin:messaging_outboundmessage_change", args=[row.outbound_id])
    assert f'href="{url}"' in page


def test_capped_count_says_more_than(admin_client, sender, template, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "CAP", 5)
    campaign = factories.CampaignFactory(sender=sender)
    _logs(7, campaign, template)
    page = admin_client.get(STATUS_LOGS).content.decode()
    assert "More than 5 status logs" in page
    _logs(0, campaign, template)
    StatusLog.objects.filter(pk__in=StatusLog.objects.values("pk")[:3]).delete()
    assert "4 status logs" in admin_client.get(STATUS_LOGS).content.decode()


def test_raw_events_list_shows_body_sizes(admin_client):
    RawEvent.objects.create(body=b'{"entry": []}')
    page = admin_client.get(reverse("admin:webhooks_rawevent_changelist")).content.decode()
    assert '<td class="field-size">13</td>' in page

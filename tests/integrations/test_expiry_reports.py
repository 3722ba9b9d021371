"""A message that ends `expired` says so: an `expired` entry closes its timeline (the API's
message detail, the admin's timeline), and a campaign that expires reports each of its unsent
rows as `message.expired` (in bulk, through the outbox's status emitter) and itself once as
`campaign.expired`."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from campaigns.models import Campaign
from messaging.integrations.events.tasks import run_delivery
from messaging.integrations.models import EventSubscription
from messaging.maintenance import run_maintenance
from messaging.models import OutboundMessage
from messaging.models import OutboundStatus as S
from messaging.policy import gate
from tests.engine.conftest import make_campaign
from tests.integrations.test_api_send import template_body

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_expired_campaign_reports_each_unsent_row_and_itself_once(
    sql_path, api, sender, template, receiver, monkeypatch
):
    monkeypatch.setattr(gate, "EXPIRE_CHUNK", 3)  # several statements: 7 rows, 3 at a time
    EventSubscription.objects.create(name="crm", url=receiver.url, secret="s")
    campaign = make_campaign(sender=sender, templates=[template], contacts=9)
    rows = OutboundMessage.objects.filter(campaign=campaign).order_by("pk")
    sent = list(rows.values_list("pk", flat=True)[:2])
    OutboundMessage.objects.filter(pk__in=sent).update(
        status=S.ACCEPTED, accepted_at=timezone.now()
    )
    unsent = set(rows.exclude(pk__in=sent).values_list("pk", flat=True))
    Campaign.objects.filter(pk=campaign.pk).update(
        valid_until=timezone.now() - timedelta(seconds=1)
    )

    before = timezone.now()
    run_maintenance()
    assert set(rows.filter(status=S.EXPIRED).values_list("pk", flat=True)) == unsent
    assert all(
        before <= at <= timezone.now()
        for at in rows.filter(status=S.EXPIRED).values_list("expired_at", flat=True)
    )
    campaign.refresh_from_db()
    assert campaign.expired == 7 and campaign.status == Campaign.Status.COMPLETED
    assert gate.expire_campaign(campaign.pk) == 0  # again: nothing left, nothing reported

    run_delivery(seconds=20)
    events = receiver.events()
    expired = [e["data"]["message_id"] for e in events if e["type"] == "message.expired"]
    assert sorted(expired) == sorted(unsent)  # each once
    kinds = [e["type"] for e in events if e["type"].startswith("campaign.")]
    assert kinds == ["campaign.expired", "campaign.completed"]
    last_row = max(i for i, e in enumerate(events) if e["type"] == "message.expired")
    assert events.index(next(e for e in events if e["type"] == "campaign.expired")) > last_row
    (reported,) = [e for e in events if e["type"] == "campaign.expired"]
    assert reported["data"]["campaign_id"] == campaign.pk
    assert reported["data"]["status"] == "expired"

    detail = api.get(f"/messages/{min(unsent)}").json()
    assert detail["status"] == "expired"
    assert [t["status"] for t in detail["timeline"]] == ["expired"]
    assert detail["timeline"][-1]["error_title"] == gate.EXPIRED_DETAIL


def test_rows_coming_back_after_the_campaign_expired_are_reported_but_not_the_campaign(
    api, sender, template, receiver
):
    """A worker held some rows when the campaign expired: it gives them back later, the next
    expiry ends them (each reported), and the campaign is not reported a second time."""
    EventSubscription.objects.create(name="crm", url=receiver.url, secret="s")
    campaign = make_campaign(sender=sender, templates=[template], contacts=5)
    rows = OutboundMessage.objects.filter(campaign=campaign).order_by("pk")
    held = list(rows.values_list("pk", flat=True)[:2])
    rows.filter(pk__in=held).update(status=S.SENDING, claimed_at=timezone.now())
    Campaign.objects.filter(pk=campaign.pk).update(valid_until=timezone.now())
    assert gate.expire_campaign(campaign.pk) == 3
    rows.filter(pk__in=held).update(status=S.QUEUED)  # the worker's release
    assert gate.expire_campaign(campaign.pk) == 2

    run_delivery(seconds=20)
    events = receiver.events()
    assert len([e for e in events if e["type"] == "message.expired"]) == 5
    assert [e["type"] for e in events if e["type"] == "campaign.expired"] == ["campaign.expired"]


def test_a_message_past_its_ttl_ends_its_timeline_with_expired(api, sender, template, admin_client):
    accepted = api.post("/messages", template_body(sender, template, ttl_seconds=1)).json()
    Campaign.objects.filter(pk=accepted["campaign_id"]).update(status=Campaign.Status.PAUSED)
    time.sleep(1.1)
    run_maintenance()  # no claim reached it: maintenance expires it
    row = OutboundMessage.objects.get(pk=accepted["id"])
    assert row.status == S.EXPIRED and row.expired_at is not None

    detail = api.get(f"/messages/{row.pk}").json()
    (entry,) = detail["timeline"]
    assert entry["status"] == "expired"
    assert abs(datetime.fromisoformat(entry["at"]) - row.expired_at) < timedelta(milliseconds=1)
    assert entry["error_title"] == gate.ROW_EXPIRED_DETAIL

    page = admin_client.get(f"/admin/messaging/outboundmessage/{row.pk}/change/")
    assert page.status_code == 200
    assert b"Expired at" in page.content


def test_a_row_expired_before_its_time_was_recorded_shows_its_deadline(api, sender, template):
    accepted = api.post("/messages", template_body(sender, template, ttl_seconds=60)).json()
    row = OutboundMessage.objects.get(pk=accepted["id"])
    OutboundMessage.objects.filter(pk=row.pk).update(status=S.EXPIRED, expired_at=None)
    (entry,) = api.get(f"/messages/{row.pk}").json()["timeline"]
    assert entry["status"] == "expired"
    assert abs(datetime.fromisoformat(entry["at"]) - row.valid_until) < timedelta(milliseconds=1)

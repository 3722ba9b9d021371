"""Sending through the API: idempotency under concurrency, batches, the service window,
and the transactional stream going before a running campaign on the same number."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from campaigns.models import Campaign
from messaging.models import OutboundMessage, OutboundStatus
from messaging.sender import run_number
from tests import factories
from tests.engine.conftest import make_campaign
from tests.integrations.conftest import Api

pytestmark = pytest.mark.django_db(transaction=True)


def template_body(sender, template, to="+14155550100", **extra):
    return {
        "sender": sender.phone_number_id,
        "to": to,
        "template": {
            "name": template.name,
            "language": template.language,
            "variables": {"1": "Ana", "2": "X1"},
        },
        **extra,
    }


def inbound_from(sender, phone, *, hours_ago: float):
    from webhooks.models import InboundMessage

    return InboundMessage.objects.create(
        sender=sender,
        user_phone=phone,
        wamid=f"wamid.in.{phone}.{hours_ago}",
        type="text",
        text="hello",
        timestamp=timezone.now() - timedelta(hours=hours_ago),
    )


def test_twenty_concurrent_identical_requests_send_one_message(sim, api_key, sender, template):
    body = template_body(sender, template)
    answers: list = []
    start = threading.Barrier(20)

    def call():
        start.wait()
        try:
            answers.append(Api(api_key.secret).post("/messages", body, {"Idempotency-Key": "o-1"}))
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert [a.status_code for a in answers] == [202] * 20
    assert len({a.json()["id"] for a in answers}) == 1
    assert OutboundMessage.objects.count() == 1
    run_number(sender.pk, worker_id="t", max_seconds=20, until_idle=True)
    assert sim.stats()["accepted"] == 1
    row = OutboundMessage.objects.get()
    assert row.status == OutboundStatus.ACCEPTED and row.transactional
    # The stream stands: sending everything does not complete it.
    assert Campaign.objects.get(pk=row.campaign_id).status == Campaign.Status.RUNNING


def test_an_idempotency_key_reused_for_another_request_is_refused(api, sender, template):
    api.post("/messages", template_body(sender, template), {"Idempotency-Key": "k"})
    other = api.post(
        "/messages", template_body(sender, template, to="+14155550111"), {"Idempotency-Key": "k"}
    )
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert OutboundMessage.objects.count() == 1


def test_a_batch_queues_the_good_items_and_names_each_bad_one(api, sender, template):
    factories.SuppressionFactory(phone="+14155550133")
    messages = [
        {
            "to": "+14155550101",
            "template": {
                "name": template.name,
                "language": "en_US",
                "variables": {"1": "a", "2": "b"},
            },
        },
        {
            "to": "12",
            "template": {
                "name": template.name,
                "language": "en_US",
                "variables": {"1": "a", "2": "b"},
            },
        },
        {"to": "+14155550102", "template": {"name": "nope", "language": "en_US"}},
        {
            "to": "+14155550103",
            "template": {"name": template.name, "language": "en_US", "variables": {"1": "a"}},
        },
        {
            "to": "+14155550133",
            "template": {
                "name": template.name,
                "language": "en_US",
                "variables": {"1": "a", "2": "b"},
            },
        },
        {"to": "+14155550104", "text": "outside the window"},
        {
            "to": "+14155550105",
            "template": {
                "name": template.name,
                "language": "en_US",
                "variables": {"1": "c", "2": "d"},
            },
        },
    ]
    response = api.post("/messages/batch", {"sender": sender.phone_number_id, "messages": messages})
    assert response.status_code == 200
    data = response.json()
    assert (data["queued"], data["refused"]) == (2, 5)
    errors = {r["index"]: r["error"] for r in data["results"] if r["error"]}
    assert {i: (e["code"], e["field"]) for i, e in errors.items()} == {
        1: ("invalid_phone", "messages[1].to"),
        2: ("unknown_template", "messages[2].template"),
        3: ("invalid_variables", "messages[3].variables"),
        4: ("recipient_opted_out", "messages[4].to"),
        5: ("window_closed", "messages[5].text"),
    }
    assert sorted(OutboundMessage.objects.values_list("phone", flat=True)) == [
        "+14155550101",
        "+14155550105",
    ]


def test_a_batch_over_1000_is_refused_whole(api, sender):
    messages = [{"to": "+14155550101", "text": "x"}] * 1001
    response = api.post("/messages/batch", {"sender": sender.phone_number_id, "messages": messages})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "messages"
    assert OutboundMessage.objects.count() == 0


def test_text_is_sent_inside_the_window_and_refused_outside(sim, api, sender):
    inbound_from(sender, "+14155550120", hours_ago=2)
    inbound_from(sender, "+14155550121", hours_ago=25)
    inside = api.post(
        "/messages",
        {"sender": sender.display_number, "to": "+14155550120", "text": "Your code is 4412"},
    )
    outside = api.post(
        "/messages", {"sender": sender.display_number, "to": "+14155550121", "text": "late"}
    )
    assert inside.status_code == 202
    assert outside.status_code == 409
    assert outside.json()["error"]["code"] == "window_closed"
    assert outside.json()["error"]["field"] == "text"

    run_number(sender.pk, worker_id="t", max_seconds=20, until_idle=True)
    row = OutboundMessage.objects.get()
    assert row.template_id is None and row.status == OutboundStatus.ACCEPTED
    assert sim.stats()["recipients"]["distinct"] == 1


def test_message_status_and_timeline(api, sender, template):
    sent = api.post("/messages", template_body(sender, template)).json()
    row = OutboundMessage.objects.get(pk=sent["id"])
    now = timezone.now()
    OutboundMessage.objects.filter(pk=row.pk).update(
        status=OutboundStatus.DELIVERED, wamid="wamid.T1", accepted_at=now
    )
    from webhooks.models import StatusLog

    StatusLog.objects.create(wamid="wamid.T1", status="sent", timestamp=now, outbound=row)
    StatusLog.objects.create(
        wamid="wamid.T1", status="delivered", timestamp=now + timedelta(seconds=2), outbound=row
    )
    detail = api.get(f"/messages/{row.pk}").json()
    assert detail["status"] == "delivered"
    assert [t["status"] for t in detail["timeline"]] == ["accepted", "sent", "delivered"]
    assert api.get("/messages/987654").status_code == 404


def test_transactional_goes_before_the_running_campaign_on_its_number(sim, api, sender, template):
    sender.rate_mps = 100
    sender.save()
    campaign = make_campaign(sender=sender, templates=[template], contacts=400)
    worker = threading.Thread(
        target=run_number,
        args=(sender.pk,),
        kwargs={"worker_id": "t", "max_seconds": 60, "until_idle": True},
    )
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (
                OutboundMessage.objects.filter(
                    campaign=campaign, status=OutboundStatus.ACCEPTED
                ).count()
                >= 50
            ):
                break
            time.sleep(0.05)
        queued_at = timezone.now()
        sent = api.post("/messages", template_body(sender, template, to="+14155550199"))
        assert sent.status_code == 202
    finally:
        worker.join(timeout=90)
        connection.close()

    row = OutboundMessage.objects.get(pk=sent.json()["id"])
    assert row.status == OutboundStatus.ACCEPTED
    after = OutboundMessage.objects.filter(campaign=campaign, accepted_at__gt=row.accepted_at)
    # It went before the rows the sender held (about 3 s of them, 270): without that, at
    # most ~80 campaign rows would follow it. accepted_at is the flush's time (once a second),
    # so the rows of its own flush do not count as after it.
    assert after.count() > 150
    assert row.accepted_at > queued_at


def test_marketing_templates_and_a_paused_stream_are_refused(api, sender, template):
    marketing = factories.TemplateFactory(account=sender.account, category="MARKETING")
    body = template_body(sender, marketing)
    refused = api.post("/messages", body)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "marketing_template"

    first = api.post("/messages", template_body(sender, template))
    stream = Campaign.objects.get(pk=first.json()["campaign_id"])
    from messaging.services import pause_campaigns

    pause_campaigns(campaigns=[stream.pk], reason="WhatsApp error 132015 (template paused)")
    paused = api.post("/messages", template_body(sender, template, to="+14155550177"))
    assert paused.status_code == 409
    assert paused.json()["error"]["code"] == "stream_paused"
    assert "132015" in paused.json()["error"]["message"]
    assert OutboundMessage.objects.count() == 1


def test_concurrent_sends_to_one_new_number_all_queue_with_one_contact(api_key, sender, template):
    """The one-statement enqueue misses a contact another request created after its snapshot:
    it falls back to the ORM path, which sees it; nothing is refused or lost."""
    from campaigns.models import Contact

    api_for_thread = [Api(api_key.secret) for _ in range(10)]
    answers: list = []
    start = threading.Barrier(10)

    def call(client):
        start.wait()
        try:
            answers.append(
                client.post("/messages", template_body(sender, template, to="+14155550177"))
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=call, args=(c,)) for c in api_for_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(a.status_code for a in answers) == [202] * 10
    rows = OutboundMessage.objects.filter(phone="+14155550177")
    assert rows.count() == 10 and len({a.json()["id"] for a in answers}) == 10
    assert Contact.objects.filter(phone="+14155550177").count() == 1
    assert Campaign.objects.get(pk=rows[0].campaign_id).total == 10


def test_a_template_meta_pauses_is_refused_at_once_though_cached(api, sender, template):
    """Each web process caches templates; Meta's new status bumps the version every request
    reads, so even a process still holding the approved row refuses the next send."""
    from messaging.integrations import lookup_cache
    from messaging.templates import record_template_status

    assert api.post("/messages", template_body(sender, template)).status_code == 202
    cache_key = ("templates", sender.account_id, template.name)
    held = lookup_cache.get(cache_key)
    assert held is not None
    record_template_status(template=template, status="PAUSED", reason="low quality")
    lookup_cache.put(cache_key, held)  # what another process still holds
    refused = api.post("/messages", template_body(sender, template, to="+14155550177"))
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "template_not_sendable"

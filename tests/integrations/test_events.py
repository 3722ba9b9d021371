"""Outbound events to a loopback receiver: every type, signed, once, in order per message;
a receiver that is down, dead letters and re-delivery, a deliverer killed mid-delivery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.utils import timezone

from messaging import services
from messaging.integrations.events import delivery
from messaging.integrations.events.delivery import deliver_subscription
from messaging.integrations.events.signals import outbound_event
from messaging.integrations.events.tasks import run_delivery
from messaging.integrations.models import EventSubscription, EventType, OutboxEvent
from messaging.models import OutboundMessage, OutboundStatus
from messaging.policy.optout import opt_in, opt_out
from messaging.sender import run_number
from tests.engine.conftest import make_campaign
from tests.webhooks.payloads import envelope, messages_body, status, statuses_body, text_message
from webhooks.drain import apply_parsed
from webhooks.payload import parse

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
SECRET = "receiver-secret"


def subscribe(receiver, **fields) -> EventSubscription:
    return EventSubscription.objects.create(name="crm", url=receiver.url, secret=SECRET, **fields)


def apply(body) -> None:
    apply_parsed(parse(body))


def check_signatures(receiver) -> None:
    for request in receiver.requests:
        header = request["headers"]["X-Wacampaigns-Signature"]
        assert delivery.verify(SECRET, header, request["body"]), header
        assert not delivery.verify("another secret", header, request["body"])


def test_every_event_type_reaches_the_subscriber_signed_once_in_order(
    sim, receiver, sender, template
):
    sub = subscribe(receiver)
    heard = []
    outbound_event.connect(
        lambda sender, **kw: heard.append(kw["event_type"]), weak=False, dispatch_uid="t"
    )
    try:
        sender.display_number = "+15550783881"
        sender.save()
        campaign = make_campaign(sender=sender, templates=[template], contacts=2, status="draft")
        services.start_campaign(campaign_id=campaign.pk)
        run_number(sender.pk, worker_id="t", max_seconds=20, until_idle=True)
        first, second = OutboundMessage.objects.filter(campaign=campaign).order_by("id")
        wa = first.phone.lstrip("+")
        apply(
            statuses_body(
                [
                    status(first.wamid, "sent", recipient=wa),
                    status(second.wamid, "failed", code=131026),
                ],
                sender.phone_number_id,
            )
        )
        apply(
            statuses_body(
                [status(first.wamid, "delivered", ts=1750030080, recipient=wa)],
                sender.phone_number_id,
            )
        )
        apply(
            statuses_body(
                [status(first.wamid, "read", ts=1750030090, recipient=wa)], sender.phone_number_id
            )
        )
        now = int(time.time()) + 2  # after the accept, whole seconds
        apply(messages_body([text_message("wamid.in1", wa, "thanks", now)], sender.phone_number_id))
        apply(
            messages_body([text_message("wamid.in2", wa, "STOP", now + 1)], sender.phone_number_id)
        )
        opt_in(phones=[first.phone])
        other = make_campaign(sender=sender, templates=[template], contacts=1, status="draft")
        services.start_campaign(campaign_id=other.pk)
        services.pause_campaign(campaign_id=other.pk, reason="spam signal")
        services.cancel_campaign(campaign_id=other.pk)
        apply(
            envelope(
                "message_template_status_update",
                {
                    "event": "PAUSED",
                    "message_template_name": template.name,
                    "message_template_language": template.language,
                    "reason": "low quality",
                },
                waba=template.account.waba_id,
            )
        )
        apply(
            envelope(
                "message_template_quality_update",
                {
                    "new_quality_score": "YELLOW",
                    "message_template_name": template.name,
                    "message_template_language": template.language,
                },
                waba=template.account.waba_id,
            )
        )
        apply(
            envelope(
                "phone_number_quality_update",
                {
                    "display_phone_number": "15550783881",
                    "event": "DOWNGRADE",
                    "current_limit": "TIER_1K",
                },
                waba=sender.account.waba_id,
            )
        )

        assert run_delivery(seconds=30) == len(receiver.events())
    finally:
        outbound_event.disconnect(dispatch_uid="t")

    events = receiver.events()
    check_signatures(receiver)
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids))  # once each
    types = {e["type"] for e in events}
    assert types >= set(EventType.values) - {
        "message.expired",  # tests/integrations/test_validity.py
        "campaign.expired",
        "campaign.draft",
        "campaign.scheduled",
    }
    assert sorted(heard) == sorted(e["type"] for e in events)  # the same events as signals
    firsts = [
        e["data"]["status"]
        for e in events
        if e["type"].startswith("message.") and e["data"].get("message_id") == first.pk
    ]
    assert firsts == ["accepted", "sent", "delivered", "read"]
    failed = next(e for e in events if e["type"] == "message.failed")
    assert failed["data"]["message_id"] == second.pk and failed["data"]["error"]["code"] == 131026
    received = [e["data"] for e in events if e["type"] == "message.received"]
    assert received[0]["campaign_id"] == campaign.pk and received[0]["text"] == "thanks"
    paused = next(e for e in events if e["type"] == "campaign.paused")
    assert paused["data"]["pause_reason"] == "spam signal"
    assert not OutboxEvent.objects.exclude(state=OutboxEvent.State.DELIVERED).exists()
    assert delivery.backlog() == 0
    # Message statuses came from the event log, everything else through the outbox.
    from_log = [e for e in events if e["id"].startswith("evt_m")]
    assert {e["type"] for e in from_log} == {
        f"message.{s}" for s in ("accepted", "sent", "delivered", "read", "failed")
    }
    assert sub.events.count() == len(events) - len(from_log)


def test_nothing_is_written_without_a_subscription_for_the_type(receiver, sender, template):
    sub = subscribe(receiver, event_types=["contact.opted_out"])
    campaign = make_campaign(sender=sender, templates=[template], contacts=1, status="draft")
    services.start_campaign(campaign_id=campaign.pk)
    assert OutboxEvent.objects.count() == 0
    sub.active = False
    sub.save()  # saving drops the cached subscription set (other processes: CACHE_SECONDS)
    opt_out(phones=["+14155550100"], source="staff")
    assert OutboxEvent.objects.count() == 0


def _events_for(sub, n):
    from messaging.integrations.events.publish import publish

    publish(EventType.CONTACT_OPTED_OUT, [{"phone": f"+1415555{i:04d}"} for i in range(n)])
    return list(sub.events.order_by("id"))


def test_a_receiver_down_for_a_minute_gets_everything_later_in_order(receiver):
    sub = subscribe(receiver, max_batch=2)
    events = _events_for(sub, 5)
    t0 = timezone.now()
    receiver.status = 503
    tried = 0
    for second in range(0, 61, 5):  # a minute of a down receiver, on an injected clock
        result = deliver_subscription(sub, now=t0 + timedelta(seconds=second))
        tried += result.failed
        assert result.delivered == 0
    assert tried >= 2 and OutboxEvent.objects.filter(state=0).count() == 5
    # Backoff: the head waits; an early try sends nothing.
    head = OutboxEvent.objects.get(pk=events[0].pk)
    assert head.attempts >= 2 and head.next_attempt_at > t0 + timedelta(seconds=60)
    receiver.status = 200
    later = head.next_attempt_at + timedelta(seconds=1)
    while deliver_subscription(sub, now=later).delivered:
        pass
    got = [e["id"] for e in receiver.events()]
    assert got == [f"evt_{e.pk}" for e in events]
    check_signatures(receiver)


def test_after_24_hours_events_are_dead_letters_and_one_click_redelivers(receiver, admin_client):
    sub = subscribe(receiver)
    (event,) = _events_for(sub, 1)
    receiver.status = 500
    deliver_subscription(sub, now=timezone.now() + timedelta(hours=25))
    event.refresh_from_db()
    assert event.state == OutboxEvent.State.DEAD and event.last_error == "HTTP 500"
    receiver.status = 200
    response = admin_client.post(
        "/admin/integrations/outboxevent/",
        {"action": "redeliver", "_selected_action": [event.pk]},
    )
    assert response.status_code == 302
    assert deliver_subscription(sub).delivered == 1
    assert [e["id"] for e in receiver.events()] == [f"evt_{event.pk}"]


def _status_event_ids(sender, template, n: int) -> list[str]:
    """`n` message.sent events, one per transaction (one event log entry each)."""
    from messaging.integrations.events.publish import publish_message_statuses
    from messaging.integrations.models import MessageEventLog

    campaign = make_campaign(sender=sender, templates=[template], contacts=n)
    for row in OutboundMessage.objects.filter(campaign=campaign).order_by("id"):
        with transaction.atomic():
            publish_message_statuses([(row.pk, OutboundStatus.SENT)])
    return [
        f"evt_m{pk}_1" for pk in MessageEventLog.objects.order_by("id").values_list("pk", flat=True)
    ]


@pytest.mark.parametrize("source", ["outbox", "event log"])
def test_a_deliverer_killed_mid_delivery_loses_nothing_and_keeps_the_order(
    receiver, source, request
):
    sub = subscribe(receiver)
    if source == "outbox":
        expected = [e.event_id for e in _events_for(sub, 6)]
    else:
        expected = _status_event_ids(
            request.getfixturevalue("sender"), request.getfixturevalue("template"), 6
        )
    receiver.delay = 0.5  # each POST takes a while: the kill lands during one
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": django_settings.REDIS_URL,
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "deliver_events", "--seconds", "60"], cwd=ROOT, env=env
    )
    try:
        deadline = time.monotonic() + 60
        while len(receiver.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.25)  # the third POST is now in flight
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert delivery.backlog() > 0
    receiver.delay = 0
    run_delivery(seconds=30)
    arrived = [e["id"] for e in receiver.events()]
    assert list(dict.fromkeys(arrived)) == expected  # every event, first arrivals in order
    assert len(arrived) - len(expected) <= 1  # at most the one in flight came twice
    assert delivery.backlog() == 0
    assert not OutboxEvent.objects.exclude(state=OutboxEvent.State.DELIVERED).exists()


def test_the_batch_read_keeps_to_the_pending_index_after_statistics_taken_in_a_backlog(receiver):
    """Statistics from a backlog (most rows pending) once made the planner walk the primary
    key through every delivered row for each batch: the read must stay on outbox_pending."""
    sub = subscribe(receiver, max_batch=500)
    _events_for(sub, 3050)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {OutboxEvent._meta.db_table}")
    while sub.events.filter(state=0).count() > 100:
        assert deliver_subscription(sub).delivered
    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN " + delivery._BATCH, [sub.pk, sub.pk, delivery.NO_BOUND, sub.max_batch]
        )
        plan = "\n".join(r[0] for r in cursor.fetchall())
        cursor.execute("EXPLAIN " + delivery._DUE, [timezone.now()])
        due = "\n".join(r[0] for r in cursor.fetchall())
    assert "outbox_pending" in plan and "_pkey" not in plan, plan
    assert "outbox_pending" in due and "_pkey" not in due, due
    assert delivery.due_subscriptions() == [sub]
    while deliver_subscription(sub).delivered:
        pass
    assert [e["id"] for e in receiver.events()] == [
        f"evt_{pk}" for pk in sub.events.order_by("id").values_list("pk", flat=True)
    ]


def test_a_subscription_held_by_another_worker_is_skipped_until_it_lets_go(receiver):
    """The lock is the connection's: held across batches, released when the holder is done."""
    import threading

    sub = subscribe(receiver)
    _events_for(sub, 2)
    held, release = threading.Event(), threading.Event()

    def other_worker() -> None:
        try:
            with delivery.holding(sub.pk) as got:
                assert got
                held.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert held.wait(30)
        assert deliver_subscription(sub).skipped and not receiver.requests
    finally:
        release.set()
        thread.join(30)
    assert deliver_subscription(sub).delivered == 1


def test_each_url_gets_its_events_path_and_query_included_also_after_a_change(receiver):
    """Connections are pooled per URL: a subscription moved to another URL posts there."""
    sub = subscribe(receiver)
    sub.url = f"{receiver.url}?token=a%2Fb"
    sub.save()
    _events_for(sub, 1)
    assert deliver_subscription(sub).delivered == 1
    sub.url = f"{receiver.url}/v2"
    sub.save()
    _events_for(sub, 1)
    assert deliver_subscription(sub).delivered == 1
    assert [r["path"] for r in receiver.requests] == ["/hook?token=a%2Fb", "/hook/v2"]

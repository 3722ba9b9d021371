"""Every status a webhook batch moves a message across is an outbound event of its own.

A POST often holds sent, delivered and read of one message (the simulator's default batching,
and Meta's under load), sometimes out of order; each must reach the subscriber, in ladder
order, once, whatever the order they came in.
"""

from __future__ import annotations

import time

import pytest

from messaging.integrations.events.tasks import run_delivery
from messaging.integrations.models import EventSubscription
from messaging.models import OutboundMessage
from messaging.models import OutboundStatus as S
from messaging.sender import run_number
from tests.engine.conftest import make_campaign
from tests.webhooks.payloads import status, statuses_body
from webhooks.drain import apply_parsed, drain
from webhooks.payload import parse

pytestmark = pytest.mark.django_db(transaction=True)
LADDER = ["accepted", "sent", "delivered", "read"]


def _statuses_by_message(receiver) -> dict[int, list[str]]:
    seen: dict[int, list[str]] = {}
    for event in receiver.events():
        if event["type"].startswith("message.") and "message_id" in event["data"]:
            seen.setdefault(event["data"]["message_id"], []).append(event["data"]["status"])
    return seen


def _accepted_rows(sender, template, n: int) -> list[OutboundMessage]:
    campaign = make_campaign(sender=sender, templates=[template], contacts=n)
    rows = list(OutboundMessage.objects.filter(campaign=campaign).order_by("id"))
    for i, row in enumerate(rows):
        row.status, row.wamid = S.ACCEPTED, f"wamid.batch{row.pk}.{i}"
    OutboundMessage.objects.bulk_update(rows, ["status", "wamid"])
    return rows


def test_sent_delivered_and_read_in_one_post_are_three_events_in_order(
    sql_path, receiver, sender, template
):
    EventSubscription.objects.create(name="crm", url=receiver.url, secret="s", max_batch=50)
    in_order, shuffled, read_only, failed = _accepted_rows(sender, template, 4)
    ts = 1750030073
    apply_parsed(
        parse(
            statuses_body(
                [
                    status(in_order.wamid, "sent", ts=ts),
                    status(in_order.wamid, "delivered", ts=ts + 1),
                    status(in_order.wamid, "read", ts=ts + 2),
                    # Out of order within the POST.
                    status(shuffled.wamid, "read", ts=ts + 2),
                    status(shuffled.wamid, "sent", ts=ts),
                    status(shuffled.wamid, "delivered", ts=ts + 1),
                    # A read that skipped delivered: delivered is implied, and reported first.
                    status(read_only.wamid, "read", ts=ts + 2),
                    status(failed.wamid, "sent", ts=ts),
                    status(failed.wamid, "failed", ts=ts + 1, code=131026),
                ],
                sender.phone_number_id,
            )
        )
    )
    # Late and repeated statuses of messages already read report nothing more.
    apply_parsed(
        parse(
            statuses_body(
                [status(read_only.wamid, "delivered"), status(in_order.wamid, "read")],
                sender.phone_number_id,
            )
        )
    )
    assert run_delivery(seconds=20) == len(receiver.events()) == 11
    seen = _statuses_by_message(receiver)
    assert seen[in_order.pk] == ["sent", "delivered", "read"]
    assert seen[shuffled.pk] == ["sent", "delivered", "read"]
    assert seen[read_only.pk] == ["sent", "delivered", "read"]
    assert seen[failed.pk] == ["sent", "failed"]
    row = OutboundMessage.objects.get(pk=read_only.pk)
    assert row.status == S.READ and row.delivered_at == row.read_at
    # Each event carries the time of its own status.
    times = [
        e["data"]["at"]
        for e in receiver.events()
        if e["data"].get("message_id") == in_order.pk and e["type"].startswith("message.")
    ]
    assert times == sorted(times) and len(set(times)) == 3


def test_a_status_that_settles_an_answer_never_seen_reports_accepted_too(
    sql_path, receiver, sender, template
):
    """The send answer was lost (row unknown, no wamid): the status tells us it was accepted."""
    EventSubscription.objects.create(name="crm", url=receiver.url, secret="s")
    campaign = make_campaign(sender=sender, templates=[template], contacts=1)
    row = OutboundMessage.objects.get(campaign=campaign)
    OutboundMessage.objects.filter(pk=row.pk).update(status=S.UNKNOWN)
    apply_parsed(
        parse(
            statuses_body(
                [
                    status("wamid.lost1", "delivered", ts=1750030074, callback=f"out:{row.pk}"),
                    status("wamid.lost1", "sent", ts=1750030073, callback=f"out:{row.pk}"),
                ],
                sender.phone_number_id,
            )
        )
    )
    run_delivery(seconds=20)
    assert _statuses_by_message(receiver)[row.pk] == ["accepted", "sent", "delivered"]


def test_statuses_from_the_simulator_batched_and_shuffled_each_reach_the_subscriber(
    sim, receiver, sender, template, live_server, settings
):
    """The real path: sender → simulator → signed status POSTs (several statuses of one
    message per POST, shuffled) → intake → drain → outbox → receiver."""
    settings.WHATSAPP_APP_SECRET = sim.app_secret
    sim.configure(
        webhook_url=f"{live_server.url}/webhooks/whatsapp/",
        webhook_delay_ms=0,
        webhook_shuffle=True,
        delivered_rate=1.0,
        read_rate=1.0,
        read_skips_delivered_rate=0.2,
        webhook_batch_size=50,
    )
    EventSubscription.objects.create(name="crm", url=receiver.url, secret="s", max_batch=100)
    n = 40
    campaign = make_campaign(sender=sender, templates=[template], contacts=n)
    run_number(sender.pk, worker_id="t", max_seconds=30, until_idle=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        hooks = sim.stats()["webhooks"]
        queued, delivered = hooks["statuses_queued"], hooks["statuses_delivered"]
        if hooks["pending"] == 0 and queued >= n * 2 and delivered == queued:
            break
        time.sleep(0.1)
    stats = sim.stats()["webhooks"]
    # Several statuses per POST: the case where intermediate events used to be lost.
    assert stats["posts"] < stats["statuses_delivered"]
    drain()
    run_delivery(seconds=30)
    rows = OutboundMessage.objects.filter(campaign=campaign)
    assert set(rows.values_list("status", flat=True)) == {S.READ}
    seen = _statuses_by_message(receiver)
    assert {pk: seen.get(pk) for pk in rows.values_list("pk", flat=True)} == {
        pk: LADDER for pk in rows.values_list("pk", flat=True)
    }
    ids = [e["id"] for e in receiver.events()]
    assert len(ids) == len(set(ids))

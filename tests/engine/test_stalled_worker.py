"""A worker that stalls with claimed rows in hand (no CPU, a long GC pause, a slow disk) must
not send them once its lease could have run out: maintenance may already have handed them to
another worker. It puts them back instead, and they go once."""

from __future__ import annotations

import time

import pytest

from messaging.models import OutboundMessage, OutboundStatus
from messaging.sender import NumberSender, run_number, send_window
from tests.engine.conftest import make_campaign

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_send_window_leaves_room_for_the_answer_before_the_lease_ends(settings):
    settings.SENDER_LEASE_SECONDS = 60
    settings.WHATSAPP_CONNECT_TIMEOUT = 3.05
    settings.WHATSAPP_READ_TIMEOUT = 15
    assert send_window() == pytest.approx(60 - 18.05 - 1.0)
    settings.SENDER_LEASE_SECONDS = 4  # shorter than the timeouts: a quarter of the lease
    assert send_window() == pytest.approx(1.0)


def test_rows_held_past_the_send_window_go_back_to_the_queue_and_are_sent_once(
    sim, sender, template
):
    campaign = make_campaign(sender=sender, templates=[template], contacts=20)
    rows = OutboundMessage.objects.filter(campaign=campaign)
    loop = NumberSender(sender.pk, worker_id="stalled")
    loop._refresh_active()
    assert loop._claim()
    held = list(loop.pending)
    assert held and rows.filter(status=OutboundStatus.SENDING).count() == len(held)
    for message in held:  # as if the worker had not run for longer than its send window
        message.claim_started = time.monotonic() - loop.send_window - 0.1

    assert loop._next_sendable() is None  # the pacer's look
    loop._release_unsendable()
    assert loop.stats.released_late == len(held)
    assert not rows.filter(status=OutboundStatus.SENDING).exists()
    assert set(rows.values_list("attempts", flat=True)) == {0}  # the claim is given back
    assert sim.stats()["accepted"] == 0

    # The HTTP thread's last look catches a row that aged between the pacer and the request.
    loop._refresh_active()
    assert loop._claim()
    message = loop.pending.popleft()
    message.claim_started = time.monotonic() - loop.send_window - 0.1
    loop.in_flight = 1
    loop._send_one(message, time.monotonic())
    loop._release_unsendable()
    assert loop.in_flight == 0 and sim.stats()["accepted"] == 0
    loop._release_pending()
    loop.client.close()

    run_number(sender.pk, worker_id="fresh", max_seconds=30, until_idle=True)
    assert sim.stats()["recipients"]["exactly_once"] == 20
    assert rows.filter(status=OutboundStatus.ACCEPTED).count() == 20

"""A transactional send goes at the sender's next slot, before the seconds of campaign rows it
already holds: whichever path claims it (the feeder's top-up or the waker), it takes the lane
of its priority in hand; and the waker claims it the moment it is committed."""

from __future__ import annotations

import threading
import time

import pytest

from messaging import state_version
from messaging.integrations.transactional import MessageSpec, send_message, stream_for
from messaging.lanes import Lanes
from messaging.models import OutboundMessage, OutboundStatus
from messaging.queue import ClaimedMessage
from messaging.redis_client import get_redis
from messaging.sender import NumberSender, run_number
from tests.engine.conftest import make_campaign

pytestmark = pytest.mark.django_db(transaction=True)


def _row(pk: int, priority: int) -> ClaimedMessage:
    return ClaimedMessage(pk, 1, None, "+14155550100", [], 1, 0, priority=priority)


def test_lanes_serve_the_highest_priority_first_and_keep_order_within_one():
    lanes = Lanes()
    lanes.extend([_row(1, 0), _row(2, 0), _row(3, 0)])
    lanes.append(_row(4, 100))
    lanes.extend([_row(5, 100), _row(6, 10)])
    lanes.appendleft(_row(7, 0))  # a slot given back: the front of its own lane
    assert len(lanes) == 7
    assert [m.id for m in lanes.snapshot()] == [4, 5, 6, 7, 1, 2, 3]
    assert [lanes.popleft().id for _ in range(7)] == [4, 5, 6, 7, 1, 2, 3]
    assert not lanes
    with pytest.raises(IndexError):
        lanes.popleft()


def test_taking_every_row_while_another_thread_pops_hands_each_row_to_exactly_one():
    """The feeder takes the rows in hand (nothing active) while the pacer pops: no row is
    taken twice or lost, and neither side raises when the other took the last one."""
    for _ in range(50):
        lanes = Lanes()
        lanes.extend([_row(pk, pk % 3) for pk in range(2000)])
        popped: list[int] = []
        errors: list[BaseException] = []

        def pacer() -> None:
            while True:
                try:
                    popped.append(lanes.popleft().id)
                except IndexError:
                    return
                except BaseException as exc:  # pragma: no cover - the failure being tested
                    errors.append(exc)
                    return

        thread = threading.Thread(target=pacer)
        thread.start()
        taken = [m.id for m in lanes.take_all()]
        thread.join(timeout=30)
        assert not thread.is_alive() and not errors
        assert sorted(popped + taken) == list(range(2000))
        assert not lanes and len(lanes) == 0


def _spec(template, to: str) -> MessageSpec:
    return MessageSpec(
        to=to, template=template.name, language=template.language, variables={"1": "Ana", "2": "X1"}
    )


def test_a_transactional_row_the_regular_claim_picks_up_goes_before_the_rows_in_hand(
    sim, sender, template
):
    """The race the waker cannot close: the row is committed just before the feeder's own
    top-up claims it (the stream first: it has the higher priority)."""
    campaign = make_campaign(sender=sender, templates=[template], contacts=200)
    stream = stream_for(sender)
    loop = NumberSender(sender.pk, worker_id="w")
    loop._refresh_active()
    assert loop._claim()
    held = len(loop.pending)
    assert held > 10
    row = send_message(sender=sender, message=_spec(template, "+14155550123"))
    loop.pending.extend(loop.pending.popleft() for _ in range(5))  # some rows go meanwhile
    loop.next_retry_claim = 0.0
    assert loop._claim()  # the top-up: the stream's row, then more campaign rows

    first = loop._next_sendable()
    assert first is not None and first.id == row.pk and first.campaign_id == stream.pk
    assert all(m.campaign_id == campaign.pk for m in loop.pending)
    loop._release_pending()
    loop.client.close()


def test_the_waker_claims_a_transactional_send_as_soon_as_it_is_committed(sim, sender, template):
    make_campaign(sender=sender, templates=[template], contacts=50)
    stream_for(sender)
    loop = NumberSender(sender.pk, worker_id="w")
    loop._refresh_active()
    loop.claiming.set()  # no feeder runs here: only the waker can claim
    waker = threading.Thread(target=loop._wake_loop)
    waker.start()
    try:
        # Subscribed before the send is committed (its message is not kept for later).
        channel = state_version.urgent_key(sender.pk)
        deadline = time.monotonic() + 20
        while dict(get_redis().pubsub_numsub(channel)).get(channel.encode(), 0) < 1:
            assert time.monotonic() < deadline, "the waker never subscribed"
            time.sleep(0.02)
        row = send_message(sender=sender, message=_spec(template, "+14155550124"))
        deadline = time.monotonic() + 20
        while not loop.pending and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [m.id for m in loop.pending.snapshot()] == [row.pk]
        assert OutboundMessage.objects.get(pk=row.pk).status == OutboundStatus.SENDING
        assert loop._seen_urgent is not None  # so the feeder does not claim it again
    finally:
        loop.draining.set()
        waker.join(timeout=10)
    assert not waker.is_alive()
    loop._release_pending()
    loop.client.close()
    assert OutboundMessage.objects.get(pk=row.pk).status == OutboundStatus.QUEUED


def test_transactional_sends_during_a_campaign_are_sent_once_each(sim, sender, template):
    sender.rate_mps = 200
    sender.save()
    make_campaign(sender=sender, templates=[template], contacts=600)
    stream_for(sender)
    worker = threading.Thread(
        target=run_number,
        args=(sender.pk,),
        kwargs={"worker_id": "t", "max_seconds": 60, "until_idle": True},
    )
    worker.start()
    rows = []
    try:
        for n in range(20):
            rows.append(send_message(sender=sender, message=_spec(template, f"+1415555{n:04d}")))
            time.sleep(0.05)
    finally:
        worker.join(timeout=90)
    assert not worker.is_alive()
    statuses = set(
        OutboundMessage.objects.filter(pk__in=[r.pk for r in rows]).values_list("status", flat=True)
    )
    assert statuses == {OutboundStatus.ACCEPTED}
    stats = sim.stats()
    assert stats["callbacks"]["exactly_once"] == 620
    assert stats["callbacks"]["more_than_once"] == 0

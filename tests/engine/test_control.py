"""Pause, resume, cancel, fairness and priority, with the sender running in a thread."""

from __future__ import annotations

import threading
import time

import pytest

from campaigns.models import Campaign
from messaging import queue
from messaging.models import OutboundMessage, OutboundStatus
from messaging.sender import run_number
from messaging.services import cancel_campaign, pause_campaign, resume_campaign
from tests import factories
from tests.engine.conftest import make_campaign

pytestmark = pytest.mark.django_db(transaction=True)


def in_background(sender, seconds=30) -> threading.Thread:
    thread = threading.Thread(
        target=run_number,
        args=(sender.pk,),
        kwargs={"worker_id": "bg", "max_seconds": seconds, "until_idle": True},
    )
    thread.start()
    return thread


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def arrival_order(sim) -> list[int]:
    """Queue row ids in the order the simulator accepted them."""
    return [int(key.split(":")[1]) for key in sim.stats(full=True)["accepted_by_callback"]]


@pytest.fixture
def slow_sender(sender):
    sender.rate_mps = 50  # target 45/s: a 300-row campaign takes ~7 s
    sender.save()
    return sender


def test_pause_stops_sending_and_resume_finishes(sim, slow_sender, template):
    campaign = make_campaign(sender=slow_sender, templates=[template], contacts=300)
    worker = in_background(slow_sender)
    wait_for(lambda: sim.stats()["accepted"] >= 40)

    pause_campaign(campaign_id=campaign.pk)
    # No wall-clock window: the worker goes idle by itself once it has let the rows go, with
    # most of the campaign still queued (unpaused, it would have sent all 300 first).
    worker.join(timeout=60)
    assert not worker.is_alive()
    after_pause = sim.stats()["accepted"]
    rows = OutboundMessage.objects.filter(campaign=campaign)
    assert rows.filter(status=OutboundStatus.SENDING).count() == 0
    assert rows.filter(status=OutboundStatus.ACCEPTED).count() == after_pause < 300
    assert rows.filter(status=OutboundStatus.QUEUED).count() == 300 - after_pause

    resume_campaign(campaign_id=campaign.pk)
    run_number(slow_sender.pk, worker_id="again", max_seconds=30, until_idle=True)
    campaign.refresh_from_db()
    assert (campaign.status, campaign.sent) == (Campaign.Status.COMPLETED, 300)
    assert sim.stats()["callbacks"]["more_than_once"] == 0


def test_rows_given_back_keep_their_place_in_the_queue(sql_path, sender, template):
    """A release (pause, shutdown, a row held past its send window) gives the attempt back and
    leaves the row where it was: due when it was, by whatever clock the sender reads."""
    campaign = make_campaign(sender=sender, templates=[template], contacts=3)
    rows = OutboundMessage.objects.filter(campaign=campaign)
    due = dict(rows.values_list("id", "next_attempt_at"))
    held = queue.claim_due(campaign_id=campaign.pk, limit=3, worker="w")
    assert len(held) == 3
    assert queue.release(held) == 3
    assert dict(rows.values_list("id", "next_attempt_at")) == due
    assert set(rows.values_list("status", "attempts")) == {(OutboundStatus.QUEUED, 0)}


def test_cancel_stops_sending_and_cancels_the_rest(sim, slow_sender, template):
    campaign = make_campaign(sender=slow_sender, templates=[template], contacts=300)
    worker = in_background(slow_sender)
    wait_for(lambda: sim.stats()["accepted"] >= 40)

    cancel_campaign(campaign_id=campaign.pk)
    worker.join(timeout=20)

    rows = OutboundMessage.objects.filter(campaign=campaign)
    accepted = rows.filter(status=OutboundStatus.ACCEPTED).count()
    assert accepted == sim.stats()["accepted"]
    assert rows.filter(status=OutboundStatus.CANCELLED).count() == 300 - accepted > 0
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELLED


def test_templates_arrive_interleaved(sim, sender, account):
    # Sends 55 ms apart: far more than the simulator's latency jitter, so the order they
    # arrive in is the order they were sent in, even on a loaded machine.
    sender.rate_mps = 20
    sender.save()
    templates = factories.TemplateFactory.create_batch(3, account=account)
    campaign = make_campaign(sender=sender, templates=templates, contacts=30)

    run_number(sender.pk, worker_id="t", max_seconds=30, until_idle=True)

    by_id = dict(OutboundMessage.objects.filter(campaign=campaign).values_list("id", "template_id"))
    sent_templates = [by_id[i] for i in arrival_order(sim)]
    ids = [t.pk for t in templates]
    assert sent_templates[:9] == ids * 3


def test_two_campaigns_on_one_number_share_it_fairly(sim, slow_sender, template):
    first = make_campaign(sender=slow_sender, templates=[template], contacts=200)
    second = make_campaign(sender=slow_sender, templates=[template], contacts=200)

    run_number(slow_sender.pk, worker_id="t", max_seconds=3, until_idle=True)

    counts = [
        OutboundMessage.objects.filter(campaign=c, status=OutboundStatus.ACCEPTED).count()
        for c in (first, second)
    ]
    assert sum(counts) > 60
    assert abs(counts[0] - counts[1]) <= 0.1 * sum(counts) + 2


def test_transactional_messages_go_before_campaign_traffic(sim, slow_sender, template):
    marketing = make_campaign(sender=slow_sender, templates=[template], contacts=60)
    urgent = make_campaign(sender=slow_sender, templates=[template], contacts=15, priority=10)

    run_number(slow_sender.pk, worker_id="t", max_seconds=30, until_idle=True)

    urgent_ids = set(urgent.messages.values_list("id", flat=True))
    order = arrival_order(sim)
    assert set(order[:15]) == urgent_ids
    assert len(order) == 75
    marketing.refresh_from_db()
    assert marketing.status == Campaign.Status.COMPLETED

"""Sends whose outcome we did not see are never re-sent blindly."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from messaging import evidence, queue
from messaging.models import OutboundMessage, OutboundStatus
from messaging.sender import run_number
from tests.engine.conftest import make_campaign

pytestmark = pytest.mark.django_db(transaction=True)


def rows(campaign):
    return OutboundMessage.objects.filter(campaign=campaign)


def test_a_lost_answer_leaves_the_row_unknown_and_it_is_not_resent(sim, sender, template, settings):
    settings.SENDER_RECONCILE_SECONDS = 600
    sim.configure(reset_after_accept_rate=1.0)  # the API takes it, the answer never arrives
    campaign = make_campaign(sender=sender, templates=[template], contacts=5)

    run_number(sender.pk, worker_id="t", max_seconds=3, until_idle=True)
    evidence.reconcile_unknown(window_seconds=600, policy="resend")
    run_number(sender.pk, worker_id="t", max_seconds=2, until_idle=True)

    assert rows(campaign).filter(status=OutboundStatus.UNKNOWN).count() == 5
    stats = sim.stats()
    assert stats["accepted"] == 5
    assert stats["callbacks"]["more_than_once"] == 0


@pytest.mark.parametrize(
    ("policy", "expected", "reconciled"),
    [
        ("hold", OutboundStatus.HELD, evidence.Reconciled(held=2)),
        ("resend", OutboundStatus.RETRY, evidence.Reconciled(resent=2)),
        # No status has ever come for this number: held, and still unknown.
        ("evidence", OutboundStatus.UNKNOWN, evidence.Reconciled(held=2)),
    ],
)
def test_after_the_window_the_policy_decides(sender, template, policy, expected, reconciled):
    campaign = make_campaign(sender=sender, templates=[template], contacts=3)
    long_ago = timezone.now() - timedelta(minutes=11)
    rows(campaign).update(status=OutboundStatus.UNKNOWN, claimed_at=long_ago)
    fresh = rows(campaign).first()
    OutboundMessage.objects.filter(pk=fresh.pk).update(claimed_at=timezone.now())

    assert evidence.reconcile_unknown(window_seconds=600, policy=policy) == reconciled
    assert rows(campaign).filter(status=expected).exclude(pk=fresh.pk).count() == 2
    fresh.refresh_from_db()
    assert (fresh.status, fresh.error_category) == (OutboundStatus.UNKNOWN, "")


def test_claims_of_a_dead_worker_become_unknown_after_the_lease(sender, template):
    campaign = make_campaign(sender=sender, templates=[template], contacts=4)
    claimed = queue.claim_due(campaign_id=campaign.pk, limit=3, worker="dead")
    assert len(claimed) == 3
    OutboundMessage.objects.filter(pk__in=[m.id for m in claimed[:2]]).update(
        claimed_at=timezone.now() - timedelta(seconds=120)
    )

    assert queue.recover_expired_leases(lease_seconds=60) == 2
    assert rows(campaign).filter(status=OutboundStatus.UNKNOWN).count() == 2
    assert rows(campaign).filter(status=OutboundStatus.SENDING).count() == 1
    # The dead worker's claims are counted apart from the tries.
    assert set(rows(campaign).values_list("status", "attempts", "lost_claims")) == {
        (OutboundStatus.UNKNOWN, 0, 1),
        (OutboundStatus.SENDING, 1, 0),
        (OutboundStatus.QUEUED, 0, 0),
    }


def test_a_claimed_row_is_not_claimed_again(sender, template):
    campaign = make_campaign(sender=sender, templates=[template], contacts=10)
    first = queue.claim_due(campaign_id=campaign.pk, limit=6, worker="a")
    second = queue.claim_due(campaign_id=campaign.pk, limit=6, worker="b")

    assert len(first) == 6 and len(second) == 4
    assert not {m.id for m in first} & {m.id for m in second}
    assert [m.id for m in first] == sorted(m.id for m in first)  # send order is id order


def test_a_late_answer_does_not_undo_a_webhook_that_came_first(sender, template):
    campaign = make_campaign(sender=sender, templates=[template], contacts=1)
    [message] = queue.claim_due(campaign_id=campaign.pk, limit=1, worker="a")
    # The delivered webhook (matched by callback data) arrived before our HTTP answer.
    OutboundMessage.objects.filter(pk=message.id).update(
        status=OutboundStatus.DELIVERED, wamid="wamid.X"
    )

    moved = queue.record_outcomes(
        [queue.RowOutcome(message.id, OutboundStatus.ACCEPTED, 1, wamid="wamid.X")]
    )

    assert moved == []
    assert OutboundMessage.objects.get(pk=message.id).status == OutboundStatus.DELIVERED
    campaign.refresh_from_db()
    assert campaign.sent == 0  # counted by the webhook path, not twice


def test_a_refused_connection_is_retried_and_then_dead_lettered(sender, template, settings):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.WHATSAPP_API_BASE_URL = f"http://127.0.0.1:{closed_port}"
    settings.SENDER_RETRY_BASE_SECONDS = 0.1
    settings.SENDER_MAX_ATTEMPTS = 2
    sender.rate_mps = 100
    sender.save()
    campaign = make_campaign(sender=sender, templates=[template], contacts=3)

    run_number(sender.pk, worker_id="t", max_seconds=15, until_idle=True)

    assert set(rows(campaign).values_list("status", "attempts", "error_category")) == {
        (OutboundStatus.FAILED, 2, "transient")
    }

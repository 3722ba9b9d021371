"""In-doubt rows are re-sent only on evidence that their number's webhooks arrive, and a dead
worker's claim does not use up the tries an API error allows.

A worker that "died" here is a claim nobody sends (queue.claim_due under a worker id no
process has); time is moved by handing the lease and reconcile steps a later `now`.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from messaging import evidence, queue
from messaging.evidence import HELD_FOR_EVIDENCE, Reconciled
from messaging.integrations.alerts.conditions import webhooks_missing
from messaging.models import FINAL_STATUSES, OutboundMessage, OutboundStatus, StatusEvidence
from messaging.selectors import waiting_reasons
from messaging.sender import run_number
from messaging.services import requeue_failed
from tests import factories
from tests.engine.conftest import make_campaign
from webhooks.payload import StatusEvent
from webhooks.statuses.matching import record_statuses

pytestmark = pytest.mark.django_db(transaction=True)
SENT = (OutboundStatus.ACCEPTED, OutboundStatus.SENT, OutboundStatus.DELIVERED, OutboundStatus.READ)


@pytest.fixture
def webhooks_on(sim, live_server, settings):
    """Turn the simulator's status webhooks to this app on (they are off by default)."""
    settings.WHATSAPP_APP_SECRET = sim.app_secret

    def on() -> None:
        sim.configure(webhook_url=f"{live_server.url}/webhooks/whatsapp/", webhook_delay_ms=20)

    return on


def wait_for_evidence(sender, *, after, timeout=15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = StatusEvidence.objects.filter(sender=sender, accepted_until__gt=after).exists()
        if seen:
            return
        time.sleep(0.1)
    raise AssertionError(f"no status webhook applied for number {sender.pk}")


def die_holding(campaign, limit):
    """A worker claims rows and dies before sending them."""
    claimed = queue.claim_due(campaign_id=campaign.pk, limit=limit, worker="dead")
    return OutboundMessage.objects.filter(pk__in=[m.id for m in claimed])


def after_the_window(minutes=11):
    """Lease (60 s) and reconcile window (600 s) both passed."""
    later = timezone.now() + timedelta(minutes=minutes)
    queue.recover_expired_leases(lease_seconds=60, now=later)
    return later


def arrivals(sim, rows) -> dict[int, int]:
    by_callback = sim.stats(full=True)["arrivals_by_callback"]
    return {pk: by_callback.get(f"out:{pk}", 0) for pk in rows.values_list("pk", flat=True)}


def test_in_doubt_rows_are_resent_after_the_window_when_webhooks_flow_for_their_number(
    sim, sender, template, webhooks_on
):
    webhooks_on()
    campaign = make_campaign(sender=sender, templates=[template], contacts=8)
    lost = die_holding(campaign, 3)
    died_at = lost.first().claimed_at
    run_number(sender.pk, worker_id="t", max_seconds=3, until_idle=True)  # the other five
    wait_for_evidence(sender, after=died_at)

    later = after_the_window()
    assert set(lost.values_list("status", "attempts", "lost_claims")) == {
        (OutboundStatus.UNKNOWN, 0, 1)
    }
    reconciled = evidence.reconcile_unknown(window_seconds=600, policy="evidence", now=later)
    assert reconciled == Reconciled(resent=3)
    run_number(sender.pk, worker_id="t", max_seconds=3, until_idle=True)

    assert OutboundMessage.objects.filter(campaign=campaign, status__in=SENT).count() == 8
    callbacks = sim.stats()["callbacks"]
    assert (callbacks["exactly_once"], callbacks["more_than_once"]) == (8, 0)
    assert set(lost.values_list("attempts", "lost_claims")) == {(1, 1)}


def test_without_webhooks_for_their_number_they_are_held_until_evidence_arrives(
    sim, sender, template, webhooks_on, account
):
    # Number A sends while webhooks do not arrive; number B after they were switched on.
    campaign = make_campaign(sender=sender, templates=[template], contacts=6)
    lost = die_holding(campaign, 2)
    died_at = lost.first().claimed_at
    run_number(sender.pk, worker_id="t", max_seconds=3, until_idle=True)
    webhooks_on()
    other = factories.SenderFactory(account=account)
    make_campaign(sender=other, templates=[template], contacts=3)
    run_number(other.pk, worker_id="t", max_seconds=3, until_idle=True)
    wait_for_evidence(other, after=died_at)

    later = after_the_window()
    reconciled = evidence.reconcile_unknown(window_seconds=600, policy="evidence", now=later)

    assert reconciled == Reconciled(held=2)
    assert set(lost.values_list("status", "error_category")) == {
        (OutboundStatus.UNKNOWN, HELD_FOR_EVIDENCE)
    }
    reasons = {r.key: r.count for r in waiting_reasons(campaign)}
    assert reasons == {"held:webhooks": 2}
    [firing] = webhooks_missing(later)
    assert firing.key == f"webhooks_missing:{sender.pk}"
    assert f"number {sender.display_number}: 2 in-doubt messages held" in firing.message
    # Looked at again: still no evidence, so still held, and never sent.
    assert evidence.reconcile_unknown(window_seconds=600, policy="evidence", now=later) == (
        Reconciled()
    )
    run_number(sender.pk, worker_id="t", max_seconds=2, until_idle=True)
    assert set(arrivals(sim, lost).values()) == {0}

    # Webhooks now arrive for number A too: statuses for a later message are the evidence.
    make_campaign(sender=sender, templates=[template], contacts=2)
    run_number(sender.pk, worker_id="t", max_seconds=3, until_idle=True)
    wait_for_evidence(sender, after=died_at)
    reconciled = evidence.reconcile_unknown(window_seconds=600, policy="evidence", now=later)
    assert reconciled == Reconciled(resent=2)
    run_number(sender.pk, worker_id="t", max_seconds=3, until_idle=True)

    assert set(arrivals(sim, lost).values()) == {1}
    assert not webhooks_missing(later)
    assert OutboundMessage.objects.filter(campaign=campaign, status__in=SENT).count() == 6


def test_a_held_row_is_settled_by_its_own_late_webhook(sim, sender, template):
    sim.configure(reset_after_accept_rate=1.0)  # the API takes it, the answer never arrives
    campaign = make_campaign(sender=sender, templates=[template], contacts=2)
    run_number(sender.pk, worker_id="t", max_seconds=3, until_idle=True)
    later = after_the_window()
    assert evidence.reconcile_unknown(window_seconds=600, policy="evidence", now=later) == (
        Reconciled(held=2)
    )
    row = OutboundMessage.objects.filter(campaign=campaign).order_by("pk").first()
    assert row.attempts == 1  # its request was written: a try, though no answer came

    # Its webhook, days late (a subscription fixed since, Meta retrying).
    record_statuses(
        events=[
            StatusEvent(
                wamid="wamid.late",
                status="delivered",
                timestamp=timezone.now(),
                recipient_id=row.phone.lstrip("+"),
                callback_data=f"out:{row.pk}",
            )
        ]
    )

    row.refresh_from_db()
    assert (row.status, row.error_category, row.error_detail) == (
        OutboundStatus.DELIVERED,
        "",
        evidence.SETTLED_DETAIL,
    )
    assert evidence.reconcile_unknown(window_seconds=600, policy="evidence", now=later) == (
        Reconciled()
    )
    assert sim.stats()["callbacks"]["more_than_once"] == 0


def test_a_dead_workers_claims_do_not_use_up_the_tries_of_an_api_error(
    sim, sender, template, settings
):
    settings.SENDER_MAX_ATTEMPTS = 6  # 131000 has its own cap of 3
    campaign = make_campaign(sender=sender, templates=[template], contacts=1)
    row = OutboundMessage.objects.get(campaign=campaign)
    for _ in range(2):  # its worker died twice while holding it
        die_holding(campaign, 1)
        later = after_the_window()
        assert evidence.reconcile_unknown(window_seconds=600, policy="resend", now=later) == (
            Reconciled(resent=1)
        )
    row.refresh_from_db()
    assert (row.status, row.attempts, row.lost_claims) == (OutboundStatus.RETRY, 0, 2)

    sim.configure(error_rates={"131000": 1.0})
    run_number(sender.pk, worker_id="t", max_seconds=15, until_idle=True)

    row.refresh_from_db()
    assert (row.status, row.error_code, row.attempts, row.lost_claims) == (
        OutboundStatus.FAILED,
        131000,
        3,
        2,
    )
    assert arrivals(sim, OutboundMessage.objects.filter(pk=row.pk)) == {row.pk: 3}


def test_a_row_its_workers_keep_dying_on_is_held_for_staff(sender, template):
    campaign = make_campaign(sender=sender, templates=[template], contacts=2)
    OutboundMessage.objects.filter(campaign=campaign).update(
        status=OutboundStatus.UNKNOWN, claimed_at=timezone.now() - timedelta(minutes=11)
    )
    poison = OutboundMessage.objects.filter(campaign=campaign).first()
    OutboundMessage.objects.filter(pk=poison.pk).update(lost_claims=evidence.MAX_LOST_CLAIMS)

    assert evidence.reconcile_unknown(window_seconds=600, policy="resend") == Reconciled(
        resent=1, held=1
    )
    poison.refresh_from_db()
    assert (poison.status, poison.error_detail) == (OutboundStatus.HELD, evidence.LOST_DETAIL)
    assert OutboundStatus.HELD not in FINAL_STATUSES  # staff decide (admin: re-queue)


def test_staff_can_requeue_a_row_held_for_evidence(sender, template):
    campaign = make_campaign(sender=sender, templates=[template], contacts=2)
    OutboundMessage.objects.filter(campaign=campaign).update(
        status=OutboundStatus.UNKNOWN,
        claimed_at=timezone.now() - timedelta(minutes=11),
        lost_claims=1,
    )
    assert evidence.reconcile_unknown(window_seconds=600, policy="evidence") == Reconciled(held=2)

    assert requeue_failed(campaign_id=campaign.pk) == 2
    assert set(
        OutboundMessage.objects.filter(campaign=campaign).values_list(
            "status", "error_category", "lost_claims"
        )
    ) == {(OutboundStatus.RETRY, "", 0)}


def test_statuses_record_how_far_the_numbers_webhooks_are_known_to_arrive(
    sender, template, sql_path
):
    campaign = make_campaign(sender=sender, templates=[template], contacts=2)
    newer, older = timezone.now(), timezone.now() - timedelta(minutes=5)
    first, second = OutboundMessage.objects.filter(campaign=campaign).order_by("pk")
    for row, at, wamid in ((first, newer, "wamid.N"), (second, older, "wamid.O")):
        OutboundMessage.objects.filter(pk=row.pk).update(
            status=OutboundStatus.ACCEPTED, accepted_at=at, wamid=wamid
        )

    for wamid in ("wamid.N", "wamid.O"):  # the newer first: an older one never moves it back
        record_statuses(events=[StatusEvent(wamid=wamid, status="sent", timestamp=newer)])

    assert StatusEvidence.objects.get(sender=sender).accepted_until == newer

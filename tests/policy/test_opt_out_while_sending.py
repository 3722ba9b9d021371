"""Nothing is sent to a number once its opt-out is committed: not from the queue, not from the
rows a worker already holds, not with several workers and one killed mid-flight."""

from __future__ import annotations

import os
import signal
import time

import pytest

from campaigns.models import Campaign, Suppression
from messaging.models import OutboundMessage
from messaging.models import OutboundStatus as S
from messaging.policy.optout import SUPPRESSED_DETAIL, opt_out
from tests import factories
from tests.engine.test_workers import start_workers, wait_all
from tests.policy.helpers import campaign_to, phones, run_until

pytestmark = pytest.mark.django_db(transaction=True)
SENT = (S.ACCEPTED, S.SENT, S.DELIVERED, S.READ)


def test_an_opt_out_between_claim_and_send_cancels_the_claimed_row(sim):
    # 4 msg/s: the worker holds about 3 s of claimed rows it has not sent yet.
    number = factories.SenderFactory(rate_mps=5)
    template = factories.TemplateFactory(account=number.account)
    people = phones("+35191234", 30)
    campaign = campaign_to(number, template, people)
    claimed = OutboundMessage.objects.filter(campaign=campaign, status=S.SENDING)
    victim: dict[str, str] = {}

    def opt_out_a_held_row() -> bool:
        if not victim:
            held = claimed.order_by("-id").first()
            if held is None or OutboundMessage.objects.filter(status__in=SENT).count() < 2:
                return False
            victim["phone"] = held.phone  # claimed by the worker, still waiting for its slot
            opt_out(phones=[held.phone], source=Suppression.Source.STAFF)
        return OutboundMessage.objects.filter(status__in=(*SENT, S.CANCELLED)).count() == 30

    run_until(number, opt_out_a_held_row, timeout=90)
    row = OutboundMessage.objects.get(campaign=campaign, phone=victim["phone"])
    assert (row.status, row.error_detail) == (S.CANCELLED, SUPPRESSED_DETAIL)
    recipients = sim.stats(full=True)["accepted_by_to"]
    assert victim["phone"].lstrip("+") not in recipients
    assert len(recipients) == 29


def test_several_workers_one_killed_never_message_a_number_after_its_opt_out(
    sim, live_server, settings
):
    settings.WHATSAPP_APP_SECRET = sim.app_secret
    sim.configure(webhook_url=f"{live_server.url}/webhooks/whatsapp/", latency_ms=60)
    number = factories.SenderFactory(rate_mps=120)
    template = factories.TemplateFactory(account=number.account)
    campaign = campaign_to(number, template, phones("+35191234", 600))
    rows = OutboundMessage.objects.filter(campaign=campaign)
    env = {
        "WHATSAPP_APP_SECRET": sim.app_secret,
        "SENDER_LEASE_SECONDS": "3",
        "SENDER_RECONCILE_SECONDS": "3",
    }
    workers = start_workers(3, sim, extra_env=env)
    deadline = time.monotonic() + 60
    victim_held = rows.filter(claimed_by="w0", status=S.SENDING)
    while time.monotonic() < deadline and not (
        sim.stats()["accepted"] >= 150 and victim_held.exists()
    ):
        time.sleep(0.05)
    # Numbers at the end of the queue, which no worker has claimed yet.
    tail = list(rows.order_by("-id").values_list("phone", flat=True)[:60])
    opt_out(phones=tail, source=Suppression.Source.STAFF)
    os.kill(workers[0].pid, signal.SIGKILL)
    workers[0].wait()
    # Rows the dead worker held: whatever it had not sent when it died must never go now.
    # Its requests already on the wire may still land: let them, then look.
    time.sleep(2)
    seen = set(sim.stats(full=True)["accepted_by_to"])
    orphans = [p for p in victim_held.values_list("phone", flat=True) if p.lstrip("+") not in seen]
    opt_out(phones=orphans, source=Suppression.Source.STAFF)
    wait_all(workers[1:], timeout=150)

    recipients = sim.stats(full=True)["accepted_by_to"]
    stopped = {p.lstrip("+") for p in [*tail, *orphans]}
    assert not stopped & set(recipients)
    assert all(n == 1 for n in recipients.values())  # never twice
    assert rows.filter(phone__in=tail, status=S.CANCELLED).count() == 60
    assert len(recipients) == 600 - len(stopped)
    assert not rows.exclude(status__in=(*SENT, S.CANCELLED)).exists()  # nothing lost
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED

"""Several sender processes at once: the shared rate cap, and a worker killed mid-run.

The workers are real `manage.py run_sender` processes on the test database; the simulator
posts its status webhooks to the app served by pytest-django's live server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from campaigns.models import Campaign
from messaging.models import OutboundMessage, OutboundStatus
from tests.engine.conftest import make_campaign

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def start_workers(
    count: int, sim, *, extra_env: dict[str, str] | None = None, seconds=60, first: int = 0
):
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": url,
        "REDIS_URL": django_settings.REDIS_URL,
        "WHATSAPP_API_BASE_URL": sim.base_url,
        "WHATSAPP_ACCESS_TOKEN": sim.token,
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    command = [
        sys.executable,
        "manage.py",
        "run_sender",
        "--until-idle",
        "--max-seconds",
        str(seconds),
    ]
    return [
        subprocess.Popen([*command, "--worker-id", f"w{i}"], cwd=ROOT, env=env)
        for i in range(first, first + count)
    ]


def wait_all(processes, timeout=90):
    deadline = time.monotonic() + timeout
    for process in processes:
        process.wait(timeout=max(1, deadline - time.monotonic()))


def test_three_workers_hold_the_shared_rate_cap(sim, sender, template):
    sender.rate_mps = 120  # target 108/s across all workers together
    sender.save()
    sim.configure(mps=120)
    campaign = make_campaign(sender=sender, templates=[template], contacts=800)

    workers = start_workers(3, sim)
    wait_all(workers)

    stats = sim.stats()
    assert [w.returncode for w in workers] == [0, 0, 0]
    assert stats["errors"] == {}  # never over the API's cap: no 130429
    assert stats["max_accepted_1s_by_number"][sender.phone_number_id] <= 120
    assert stats["callbacks"]["exactly_once"] == 800
    assert stats["callbacks"]["more_than_once"] == 0
    campaign.refresh_from_db()
    assert (campaign.status, campaign.sent) == (Campaign.Status.COMPLETED, 800)
    claimed_by = set(OutboundMessage.objects.values_list("claimed_by", flat=True))
    assert len(claimed_by) == 3  # every worker took a share


def test_a_worker_killed_mid_run_loses_nothing_and_sends_nothing_twice(
    sim, sender, template, live_server, settings
):
    settings.WHATSAPP_APP_SECRET = sim.app_secret
    sim.configure(
        webhook_url=f"{live_server.url}/webhooks/whatsapp/",
        webhook_delay_ms=50,
        latency_ms=60,
        jitter_ms=30,
    )
    sender.rate_mps = 120
    sender.save()
    campaign = make_campaign(sender=sender, templates=[template], contacts=600)
    env = {
        "WHATSAPP_APP_SECRET": sim.app_secret,
        "SENDER_LEASE_SECONDS": "4",
        "SENDER_RECONCILE_SECONDS": "4",
        "WHATSAPP_READ_TIMEOUT": "2",
    }
    rows = OutboundMessage.objects.filter(campaign=campaign)
    victim_in_hand = rows.filter(claimed_by="w0", status=OutboundStatus.SENDING)
    # The victim starts first, so it surely holds claimed rows when the others join.
    [victim] = start_workers(1, sim, extra_env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not victim_in_hand.exists():
        time.sleep(0.05)
    workers = [victim, *start_workers(2, sim, extra_env=env, first=1)]
    while time.monotonic() < deadline and not (
        sim.stats()["accepted"] >= 150 and victim_in_hand.exists()
    ):
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)  # mid-flight: claimed rows and requests in the air
    victim.wait()
    held_when_killed = victim_in_hand.count()
    wait_all(workers[1:], timeout=120)

    stats = sim.stats()
    assert victim.returncode == -signal.SIGKILL
    assert [w.returncode for w in workers[1:]] == [0, 0]
    assert stats["callbacks"]["more_than_once"] == 0, stats["callbacks"]["duplicates"]
    assert stats["callbacks"]["exactly_once"] == 600
    assert held_when_killed > 0  # the victim really held claimed work when it died
    final = (
        OutboundStatus.ACCEPTED,
        OutboundStatus.SENT,
        OutboundStatus.DELIVERED,
        OutboundStatus.READ,
    )
    assert rows.filter(status__in=final).count() == 600
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert campaign.sent == 600
    # A try counted is a request the API got; a claim lost with the victim may have been one
    # or not, and is counted apart, so the tries an API error allows are not used up.
    arrived = sim.stats(full=True)["arrivals_by_callback"]
    tries = list(rows.values_list("pk", "attempts", "lost_claims"))
    for pk, attempts, lost in tries:
        assert attempts <= arrived.get(f"out:{pk}", 0) <= attempts + lost, (pk, attempts, lost)
    assert sum(lost for _pk, _attempts, lost in tries) > 0


def test_with_webhooks_not_arriving_a_killed_workers_rows_are_held_not_sent_twice(
    sim, sender, template
):
    """Issue 10's operator test: no webhook reaches the app (a wrong URL, an expired
    subscription), and a worker dies holding rows. The default policy re-sends none of them."""
    sim.configure(latency_ms=60, jitter_ms=30)  # and no webhook_url: statuses never arrive
    sender.rate_mps = 120
    sender.save()
    campaign = make_campaign(sender=sender, templates=[template], contacts=600)
    env = {"SENDER_LEASE_SECONDS": "4", "SENDER_RECONCILE_SECONDS": "4"}
    rows = OutboundMessage.objects.filter(campaign=campaign)
    victim_in_hand = rows.filter(claimed_by="w0", status=OutboundStatus.SENDING)
    [victim] = start_workers(1, sim, extra_env=env, seconds=25)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not victim_in_hand.exists():
        time.sleep(0.05)
    workers = [victim, *start_workers(1, sim, extra_env=env, seconds=25, first=1)]
    while time.monotonic() < deadline and not (
        sim.stats()["accepted"] >= 150 and victim_in_hand.exists()
    ):
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    held_when_killed = victim_in_hand.count()
    wait_all(workers[1:], timeout=60)  # runs its 25 s: the campaign cannot finish

    from messaging.evidence import held_filter
    from messaging.integrations.alerts.conditions import webhooks_missing

    stats = sim.stats()
    assert stats["callbacks"]["more_than_once"] == 0, stats["callbacks"]["duplicates"]
    held = rows.filter(held_filter()).count()
    assert 0 < held == held_when_killed
    assert rows.filter(status=OutboundStatus.ACCEPTED).count() == 600 - held  # nothing lost
    [firing] = webhooks_missing(timezone.now())
    assert f"{held} in-doubt messages held" in firing.message
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING

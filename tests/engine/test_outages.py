"""Workers outlive their servers: PostgreSQL restarted and Redis stopped in the middle of a run.

Both tests disturb only servers of their own: the PostgreSQL restarted is the test instance
(scripts/services.sh, on this suite's own port), and the Redis stopped is started here on a
spare port for this test alone.
"""

from __future__ import annotations

import glob
import os
import subprocess
import time
from pathlib import Path

import pytest
from django.db import connection

from campaigns.models import Campaign
from messaging.models import OutboundMessage, OutboundStatus, PacingState
from tests.engine.conftest import make_campaign
from tests.engine.test_workers import start_workers, wait_all

pytestmark = pytest.mark.django_db(transaction=True)


def _pg_ctl(*args: str) -> None:
    """pg_ctl on this suite's own PostgreSQL (the data directory scripts/services.sh made)."""
    port = connection.settings_dict["PORT"]
    data = Path(os.environ.get("WAC_PG_DIR", f"/tmp/wacampaigns-pg-{port}"))
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not binaries or not (data / "postmaster.pid").exists():
        pytest.skip(f"no PostgreSQL data directory of this suite at {data}")
    command = [binaries[-1], "-D", str(data), "-l", str(data / "server.log"), "-w", *args]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def _wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_a_postgres_restart_costs_seconds_not_workers(sim, sender, template):
    sender.rate_mps = 100
    sender.save()
    campaign = make_campaign(sender=sender, templates=[template], contacts=600)
    connection.close()
    workers = start_workers(2, sim, seconds=90, extra_env={"SENDER_LEASE_SECONDS": "5"})
    _wait_for(lambda: sim.stats()["accepted"] >= 150)

    _pg_ctl("-m", "fast", "restart")  # drops every session, refuses connections meanwhile
    restarted_at = sim.stats()["accepted"]
    connection.close()  # ours went with the restart too
    assert all(w.poll() is None for w in workers)  # nobody died of it
    wait_all(workers, timeout=120)

    stats = sim.stats()
    assert [w.returncode for w in workers] == [0, 0]
    assert restarted_at < 600  # the restart really happened mid-run
    assert stats["callbacks"]["more_than_once"] == 0, stats["callbacks"]["duplicates"]
    assert stats["callbacks"]["exactly_once"] == 600
    rows = OutboundMessage.objects.filter(campaign=campaign)
    assert rows.filter(status=OutboundStatus.ACCEPTED).count() == 600
    campaign.refresh_from_db()
    assert (campaign.status, campaign.sent) == (Campaign.Status.COMPLETED, 600)


def test_redis_stopped_mid_run_pacing_moves_to_postgres_and_back(sim, sender, template, own_redis):
    import redis

    sender.rate_mps = 100  # target 90/s over both workers; the simulator refuses a 101st
    sender.save()
    sim.configure(mps=100)
    campaign = make_campaign(sender=sender, templates=[template], contacts=1500)
    connection.close()
    workers = start_workers(2, sim, seconds=120, extra_env={"REDIS_URL": own_redis.url})
    _wait_for(lambda: sim.stats()["accepted"] >= 200)

    own_redis.stop()
    stopped_at = sim.stats()["accepted"]
    _wait_for(
        lambda: PacingState.objects.filter(sender=sender, mode=PacingState.Mode.POSTGRES).exists()
    )
    _wait_for(lambda: sim.stats()["accepted"] >= stopped_at + 300)  # sending goes on
    assert all(w.poll() is None for w in workers)
    own_redis.start()  # empty, as after a restart
    restarted_at = sim.stats()["accepted"]
    _wait_for(
        lambda: PacingState.objects.filter(sender=sender, mode=PacingState.Mode.REDIS).exists()
    )
    switched_back_at = sim.stats()["accepted"]
    wait_all(workers, timeout=120)

    stats = sim.stats()
    assert [w.returncode for w in workers] == [0, 0]
    assert restarted_at < 1500 and switched_back_at < 1500  # both switches happened mid-run
    assert stats["errors"] == {}  # never over the cap: no 130429
    assert stats["max_accepted_1s_by_number"][sender.phone_number_id] <= 100
    assert stats["callbacks"]["more_than_once"] == 0, stats["callbacks"]["duplicates"]
    assert stats["callbacks"]["exactly_once"] == 1500
    assert OutboundMessage.objects.filter(status=OutboundStatus.ACCEPTED).count() == 1500
    campaign.refresh_from_db()
    assert (campaign.status, campaign.sent) == (Campaign.Status.COMPLETED, 1500)
    # Paced by Redis again after the switch back: its bucket is there.
    assert redis.Redis.from_url(own_redis.url).exists(f"wac:pace:{sender.pk}")

"""Workers outlive their servers: PostgreSQL restarted and Redis stopped in the middle of a run.

Both tests disturb only servers of their own: the PostgreSQL restarted is the test instance
(scripts/services.sh, on this suite's own port), and the Redis stopped is started here on a
spare port for this test alone.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from django.db import connection

from campaigns.models import Campaign
from messaging.models import OutboundMessage, OutboundStatus
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


@pytest.fixture
def own_redis():
    """A redis-server of this test's own, on a free port; the test may stop and restart it."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def start() -> subprocess.Popen:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=port)
        _wait_for(lambda: _pings(client), timeout=10)
        return process

    class OwnRedis:
        url = f"redis://127.0.0.1:{port}/0"
        process = start()

        def stop(self) -> None:
            self.process.terminate()
            self.process.wait(timeout=10)

        def start(self) -> None:
            self.process = start()

    handle = OwnRedis()
    yield handle
    if handle.process.poll() is None:
        handle.stop()


def _pings(client) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False

"""Engine tests run the real sender against the real simulator over loopback HTTP."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
from django.utils import timezone

from messaging.models import OutboundMessage
from messaging.simulator.harness import start_simulator
from tests import factories


@pytest.fixture(scope="session")
def simulator_process():
    with start_simulator(latency_ms=20, jitter_ms=10, mps=1000, seed=7) as sim:
        yield sim


@pytest.fixture
def sim(simulator_process, settings):
    """A simulator with fresh counters and start options, and the app pointed at it. After
    the test, its webhooks stop and the POSTs under way finish: one reaching the live server
    while the test database is flushed would deadlock the flush."""
    simulator_process.reset(config=True)
    settings.WHATSAPP_API_BASE_URL = simulator_process.base_url
    settings.WHATSAPP_ACCESS_TOKEN = simulator_process.token
    settings.SENDER_RETRY_FIRST_SECONDS = 0.2
    settings.SENDER_RETRY_BASE_SECONDS = 0.2
    settings.SENDER_RETRY_MAX_SECONDS = 1.0
    yield simulator_process
    simulator_process.reset(config=True)
    _wait_until(lambda: simulator_process.stats()["webhooks"]["in_flight"] == 0, timeout=30)


@pytest.fixture(autouse=True)
def _fresh_pacing(redis_client):
    """Every test starts with empty buckets (the Redis db is flushed by redis_client)."""


def make_campaign(*, sender, templates, contacts: int, status="running", **fields):
    """A running campaign with `contacts` queue rows, interleaved over `templates`."""
    campaign = factories.CampaignFactory(sender=sender, status=status, total=contacts, **fields)
    for position, template in enumerate(templates):
        factories.CampaignTemplateFactory(campaign=campaign, template=template, position=position)
    start = factories.ContactFactory._meta.model.objects.count()
    people = factories.ContactFactory.create_batch(contacts)
    now = timezone.now()
    OutboundMessage.objects.bulk_create(
        OutboundMessage(
            campaign=campaign,
            contact=person,
            template=templates[i % len(templates)],
            sender=sender,
            phone=person.phone,
            parameters=[
                {"type": "body", "parameters": [{"type": "text", "text": f"n{start + i}"}]}
            ],
            priority=campaign.priority,
            next_attempt_at=now,
        )
        for i, person in enumerate(people)
    )
    return campaign


@pytest.fixture
def own_redis():
    """A redis-server of this test's own, on a free port; the test may stop and restart it."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def launch() -> subprocess.Popen:
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
        _wait_until(lambda: _pings(client), timeout=10)
        return process

    class OwnRedis:
        url = f"redis://127.0.0.1:{port}/0"
        process = launch()

        def stop(self) -> None:
            self.process.terminate()
            self.process.wait(timeout=10)

        def start(self) -> None:
            self.process = launch()

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


def _wait_until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)

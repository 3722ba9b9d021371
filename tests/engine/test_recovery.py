"""Recovery in seconds: short task locks kept by a heartbeat, and the cluster keeper."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django_q.conf import Conf
from django_q.models import OrmQ

from messaging import keeper, locks, tasks
from tests.engine.conftest import make_campaign
from webhooks.models import RawEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def queued_tasks(monkeypatch):
    """Tasks go to the ORM broker's queue instead of running inline (tests run sync)."""
    monkeypatch.setattr(Conf, "SYNC", False)


def _queued(func: str) -> int:
    return sum(1 for task in OrmQ.objects.all() if task.func() == func)


def _wait_for(condition, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_the_dispatcher_is_restarted_soon_after_its_lock_holder_dies(redis_client, queued_tasks):
    # A live dispatcher's lock: the keeper leaves it alone.
    redis_client.set(tasks.DISPATCH_LOCK, "a-dispatcher", px=int(tasks.LOCK_TTL * 1000))
    keeper.look_once()
    assert _queued("messaging.tasks.dispatch") == 0
    # Its holder dies: nobody extends the lock, it expires within LOCK_TTL, the keeper acts.
    redis_client.pexpire(tasks.DISPATCH_LOCK, 200)
    _wait_for(lambda: not redis_client.exists(tasks.DISPATCH_LOCK), "the lock to expire")
    redis_client.delete("wac:keeper:round")
    keeper.look_once()
    assert _queued("messaging.tasks.dispatch") == 1
    # The next rounds do not pile up more dispatchers while that one is on its way.
    redis_client.delete("wac:keeper:round")
    keeper.look_once()
    assert _queued("messaging.tasks.dispatch") == 1


def test_a_held_lock_is_extended_and_a_lock_taken_by_another_is_reported_lost(redis_client):
    lock = locks.acquire("wac:lock:test", 1.0)
    assert lock is not None
    assert locks.extend(lock, 30.0)
    assert redis_client.pttl("wac:lock:test") > 10_000
    redis_client.delete("wac:lock:test")  # e.g. Redis restarted empty: taken back
    assert locks.extend(lock, 30.0) and redis_client.get("wac:lock:test") == lock.token.encode()
    redis_client.set("wac:lock:test", "someone-else")
    assert not locks.extend(lock, 30.0)


def test_a_slice_whose_lock_is_taken_over_stops_and_leaves_the_lock_alone(
    sim, sender, template, settings, redis_client
):
    settings.SENDER_SLICE_SECONDS = 30
    sender.rate_mps = 20
    sender.save()
    make_campaign(sender=sender, templates=[template], contacts=400)
    key = f"wac:lock:slice:{sender.pk}:0"

    def take_over() -> None:
        _wait_for(lambda: sim.stats()["accepted"] >= 5, "the slice to send")
        redis_client.set(key, "another-copy", ex=60)

    thief = threading.Thread(target=take_over)
    thief.start()
    try:
        sent = tasks.run_sender_slice(sender.pk, 0)
    finally:
        thief.join()
        connection.close()

    # It stopped well before its 30 s slice (20/s would have sent about 540), and the
    # lock it lost is the other holder's, untouched.
    assert 5 <= sent < 200
    assert sim.stats()["accepted"] == sent
    assert redis_client.get(key) == b"another-copy"


def test_waiting_webhook_bodies_get_a_drain_queued_by_the_keeper(redis_client, queued_tasks):
    keeper.look_once()
    assert _queued("webhooks.tasks.drain_webhooks") == 0  # nothing waits
    RawEvent.objects.create(body=b"{}")
    redis_client.delete("wac:keeper:round")
    keeper.look_once()
    assert _queued("webhooks.tasks.drain_webhooks") == 1


def test_a_spawned_cluster_worker_starts_the_keeper_which_restarts_the_dispatcher(
    redis_client, queued_tasks
):
    from django_q.signals import post_spawn

    try:
        post_spawn.send(sender="django_q", proc_name="Process-1")
        # At once (no lock held: a cluster just restarted), and only one keeper per process.
        _wait_for(lambda: _queued("messaging.tasks.dispatch") == 1, "the keeper's dispatch")
        assert keeper.start() is None
    finally:
        keeper.stop_all()


@pytest.fixture
def redis_away(settings):
    """REDIS_URL points at a closed port (locks, pacing and state version fall back)."""
    import socket

    from messaging.redis_client import get_redis

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        settings.REDIS_URL = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    get_redis.cache_clear()
    yield
    get_redis.cache_clear()


def test_a_slice_runs_once_without_redis(sim, sender, template, settings, redis_away):
    settings.SENDER_SLICE_SECONDS = 30
    sender.rate_mps = 20
    sender.save()
    campaign = make_campaign(sender=sender, templates=[template], contacts=100)
    sent: list[int] = []

    def first() -> None:
        try:
            sent.append(tasks.run_sender_slice(sender.pk, 0))
        finally:
            connection.close()

    runner = threading.Thread(target=first)
    runner.start()
    try:
        _wait_for(lambda: sim.stats()["accepted"] >= 5, "the slice to send")
        assert locks.is_held(f"wac:lock:slice:{sender.pk}:0")  # in PostgreSQL
        assert tasks.run_sender_slice(sender.pk, 0) == 0  # a second copy is turned away
    finally:
        runner.join(timeout=120)
    campaign.refresh_from_db()
    assert sent == [100] and campaign.sent == 100
    assert sim.stats()["callbacks"]["more_than_once"] == 0

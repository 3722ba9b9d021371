"""The one retry rule for lost connections, and task locks that outlive Redis."""

from __future__ import annotations

import socket
import time

import pytest
import redis
from django.db import OperationalError

from messaging import locks
from messaging.transient import Backoff, GaveUp, retry_transient


def _failing(times: int, error: BaseException):
    calls = []

    def step() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "done"

    return step, calls


@pytest.mark.parametrize(
    "error", [OperationalError("server closed the connection"), redis.ConnectionError("refused")]
)
def test_a_lost_connection_is_retried_until_it_comes_back(error, caplog):
    step, calls = _failing(3, error)
    backoff = Backoff("test loop", base=0.001, cap=0.01)

    assert retry_transient(step, backoff=backoff) == "done"
    assert len(calls) == 4
    assert backoff.failures == 0
    lost = [r for r in caplog.records if "lost a connection" in r.getMessage()]
    assert len(lost) == 1  # one outage, one line, however many retries


def test_anything_else_is_not_retried():
    step, calls = _failing(1, ValueError("a bug"))
    with pytest.raises(ValueError):
        retry_transient(step, backoff=Backoff("test loop", base=0.001))
    assert len(calls) == 1


def test_the_caller_gives_up_at_its_deadline():
    step, calls = _failing(10**6, OperationalError("the database system is starting up"))
    with pytest.raises(GaveUp):
        retry_transient(
            step, backoff=Backoff("test", base=0.001, cap=0.01), deadline=time.monotonic() + 0.1
        )
    assert len(calls) > 1


def test_the_delay_grows_to_its_cap():
    backoff = Backoff("test", base=0.1, cap=1.0)
    delays = [backoff.failed(OperationalError("x")) for _ in range(8)]
    assert delays[0] <= 0.15 and 0.5 <= delays[-1] <= 1.5


@pytest.fixture
def redis_away(monkeypatch):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = redis.Redis(port=port, socket_connect_timeout=1)
    monkeypatch.setattr(locks, "get_redis", lambda: client)


@pytest.mark.django_db(transaction=True)
def test_without_redis_a_lock_is_a_postgres_advisory_lock(redis_away):
    lock = locks.acquire("wac:lock:slice:1:0", 60)
    assert lock is not None and lock.session is not None

    assert locks.acquire("wac:lock:slice:1:0", 60) is None  # not twice
    assert locks.is_held("wac:lock:slice:1:0")
    assert not locks.is_held("wac:lock:slice:1:1")
    locks.release(lock)
    assert not locks.is_held("wac:lock:slice:1:0")
    again = locks.acquire("wac:lock:slice:1:0", 60)
    assert again is not None
    locks.release(again)


@pytest.mark.django_db(transaction=True)
def test_a_lock_kept_across_a_redis_outage_is_never_held_twice(monkeypatch, redis_client):
    from messaging.redis_client import get_redis

    live = get_redis()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = redis.Redis(port=probe.getsockname()[1], socket_connect_timeout=1)
    key = "wac:lock:slice:7:0"
    holder = locks.acquire(key, 60)
    assert holder is not None and holder.token and holder.session is None

    monkeypatch.setattr(locks, "get_redis", lambda: dead)  # Redis lost
    assert locks.extend(holder, 5)  # the holder goes on, now holding PostgreSQL's lock too
    assert holder.session is not None
    assert locks.is_held(key)
    assert locks.acquire(key, 60) is None  # no second copy during the outage

    monkeypatch.setattr(locks, "get_redis", lambda: live)  # back, and the key expired
    redis_client.delete(key)
    assert locks.is_held(key)
    assert locks.acquire(key, 60) is None  # still the outage's holder's
    locks.release(holder)
    # The server drops a closed session's advisory locks as its backend exits, a moment later.
    deadline = time.monotonic() + 30
    while locks.is_held(key):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    again = locks.acquire(key, 60)
    assert again is not None and again.token
    locks.release(again)


@pytest.mark.django_db(transaction=True)
def test_a_copy_started_during_the_outage_stops_the_old_holder(monkeypatch, redis_client):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = redis.Redis(port=probe.getsockname()[1], socket_connect_timeout=1)
    key = "wac:lock:slice:7:1"
    holder = locks.acquire(key, 60)
    assert holder is not None
    monkeypatch.setattr(locks, "get_redis", lambda: dead)
    other = locks.acquire(key, 60)  # took the advisory lock before the holder's heartbeat
    assert other is not None and other.session is not None
    assert not locks.extend(holder, 5)  # the old holder learns it must stop
    locks.release(other)
    locks.release(holder)

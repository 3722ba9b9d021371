"""The pacing bucket without Redis: PostgreSQL's row under concurrent workers, and the switch
there and back with a Redis of the test's own that it stops and starts.

Slots are compared as times, never how fast anything ran.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time

import pytest
import redis
from django.db import connection

from messaging.models import PacingState
from messaging.pacing import GUARD_WINDOW, RedisBucket
from messaging.pacing_failover import (
    GRACE,
    QUIET_RETURN,
    FailoverBucket,
    PostgresBucket,
    max_pace,
)
from messaging.redis_client import fast_retry

pytestmark = pytest.mark.django_db(transaction=True)


def _busiest(slots: list[float], window: float) -> int:
    slots = sorted(slots)
    return max((bisect.bisect_left(slots, s + window) - i for i, s in enumerate(slots)), default=0)


def test_two_threads_share_the_postgres_bucket_without_sharing_a_slot(sender):
    cap, target = 200.0, 180.0
    bucket = PostgresBucket(sender_id=sender.pk, target=target, cap=cap)
    assert bucket.take_over(rate=target, serving=2)
    assert not bucket.take_over(rate=target, serving=2)  # once
    slots: dict[str, list[float]] = {"a": [], "b": []}
    closed: list[str] = []
    start = threading.Barrier(2)

    def worker(name: str) -> None:
        try:
            start.wait()
            while len(slots[name]) < 400:
                got = bucket.reserve(9, worker=name)
                assert got is not None
                if not got.open:
                    closed.append(name)
                    time.sleep(0.01)
                    continue
                slots[name].extend(got.now + got.first + i / got.pace for i in range(9))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in slots]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    every = sorted(slots["a"] + slots["b"])
    assert len(every) == len(set(every)) == len(slots["a"]) + len(slots["b"])
    assert slots["a"] and slots["b"]  # both got slots...
    pace = min(target, max_pace(cap))
    gaps = [b - a for a, b in itertools.pairwise(every)]
    assert min(gaps) >= 1 / pace - 1e-6  # ...never two at once, whoever took them
    assert _busiest(every, GUARD_WINDOW) < cap
    assert _busiest(every, 1.0) <= target + 1
    state = PacingState.objects.get(sender=sender)
    assert sorted(state.pg_workers) == ["a", "b"]


def test_no_postgres_slot_until_every_serving_worker_has_joined_or_the_grace_passed(sender):
    bucket = PostgresBucket(sender_id=sender.pk, target=90.0, cap=100.0)
    assert bucket.reserve(5, worker="a") is None  # on Redis: no row, no slots here
    bucket.take_over(rate=90.0, serving=2)
    first = bucket.reserve(5, worker="a")
    assert first is not None and not first.open and 0 < first.wait <= GRACE
    # "b" still held Redis slots up to 0.3 s from now: PostgreSQL starts after them.
    second = bucket.reserve(5, worker="b", not_before=0.3)
    assert second is not None and second.open and second.first >= 0.3 - 0.01
    third = bucket.reserve(5, worker="a")
    assert third is not None and third.open
    assert third.now + third.first >= second.now + second.first + 5 / second.pace - 1e-6

    alone = PostgresBucket(sender_id=sender.pk, target=90.0, cap=100.0)
    PacingState.objects.filter(sender=sender).update(mode="redis")
    alone.take_over(rate=90.0, serving=3)  # two of three never come: the grace decides
    deadline = time.monotonic() + GRACE + 30
    while True:
        got = alone.reserve(5, worker="a")
        assert got is not None
        if got.open:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)


class _Pacer(threading.Thread):
    """A worker's pacer: reserves chunks and 'sends' each slot at its time (records it)."""

    def __init__(self, bucket: FailoverBucket, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.bucket = bucket
        self.stop_event = stop
        self.sent: list[tuple[float, bool]] = []  # (monotonic time, on PostgreSQL)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                reservation = self.bucket.reserve(5)
                now = time.monotonic()
                for offset in reservation.offsets:
                    wait = now + offset - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    self.sent.append((now + offset, self.bucket.on_pg))
        except BaseException as exc:
            self.error = exc
        finally:
            connection.close()


def test_redis_lost_and_back_two_workers_switch_together_and_never_exceed_the_cap(
    sender, own_redis
):
    cap, target = 100.0, 90.0
    client = redis.Redis.from_url(own_redis.url, socket_connect_timeout=1, retry=fast_retry())

    def failover(worker: str) -> FailoverBucket:
        shared = RedisBucket(client, key=f"wac:pace:{sender.pk}", target=target, cap=cap)
        pg = PostgresBucket(sender_id=sender.pk, target=target, cap=cap)
        bucket = FailoverBucket(shared, pg, worker_id=worker, initial=target)
        bucket.serving(worker)
        return bucket

    buckets = [failover("w1"), failover("w2")]
    assert [b.serving(w) for b, w in zip(buckets, ["w1", "w2"], strict=True)] == [2, 2]
    stop = threading.Event()
    pacers = [_Pacer(b, stop) for b in buckets]
    for p in pacers:
        p.start()

    def sent() -> list[tuple[float, bool]]:
        return sorted(s for p in pacers for s in p.sent)

    def wait_for(condition, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert all(p.error is None for p in pacers), [p.error for p in pacers]
            assert time.monotonic() < deadline, "condition not reached in time"
            time.sleep(0.05)

    try:
        wait_for(lambda: len(sent()) >= 100)
        own_redis.stop()
        wait_for(lambda: all(b.on_pg for b in buckets))
        state = PacingState.objects.get(sender=sender)
        assert state.mode == PacingState.Mode.POSTGRES
        on_pg = sum(1 for _, pg in sent() if pg)
        wait_for(lambda: sum(1 for _, pg in sent() if pg) >= on_pg + 150)  # sending goes on
        own_redis.start()
        wait_for(lambda: not any(b.on_pg for b in buckets), timeout=QUIET_RETURN + 60)
        back = len(sent())
        wait_for(lambda: len(sent()) >= back + 100)
    finally:
        stop.set()
        for p in pacers:
            p.join(timeout=30)
    assert all(p.error is None for p in pacers), [p.error for p in pacers]
    times = [t for t, _ in sent()]
    # Slots are recorded when handed over, so a window of the cap's second (plus the
    # lateness the sender allows) holds no more than the cap, across both switches.
    assert _busiest(times, 1.0) <= cap
    # Closer still: the slots keep their spacing through both switches (a slot or two of
    # slack for the moment each worker reads its reservation at).
    assert _busiest(times, 1.0) <= target + 3
    assert PacingState.objects.get(sender=sender).mode == PacingState.Mode.REDIS
    client.close()

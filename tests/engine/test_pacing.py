"""Pacing at the limit: the guard, the throttle response, in-flight from latency, shares.

What the simulator saw is counted; nothing here asserts how fast anything went.
"""

from __future__ import annotations

import sys
import threading
import time

import pytest
from django.db import connection

from campaigns.models import Campaign
from messaging.pacing import GUARD_WINDOW, QUIET, STEP_INTERVAL, LocalBucket, RedisBucket
from messaging.policy.actions import backoff_seconds
from messaging.redis_client import get_redis
from messaging.sender import NumberSender, run_number
from tests.engine.conftest import make_campaign

pytestmark = pytest.mark.django_db(transaction=True)


def _bucket(target: float = 190.0, cap: float = 200.0, initial: float | None = None):
    return RedisBucket(get_redis(), key="wac:pace:test", target=target, cap=cap, initial=initial)


def _busy(stop: threading.Event) -> None:
    """A pure-Python loop holding the GIL: the HTTP threads start late and bunch."""
    while not stop.is_set():
        sum(i * i for i in range(20_000))


def test_three_starved_workers_never_put_more_than_the_cap_into_a_second(
    sim, sender, template, settings
):
    # Slots 20 % faster than the cap (as when the configured rate is wrong, or slots bunch
    # after a stall): only the guard stands between them and the API's window.
    settings.SENDER_RATE_HEADROOM = 1.2
    sender.rate_mps = 60
    sender.save()
    sim.configure(mps_overrides={sender.phone_number_id: 60})
    campaign = make_campaign(sender=sender, templates=[template], contacts=300)
    stop = threading.Event()
    hogs = [threading.Thread(target=_busy, args=(stop,))]
    # Hand the GIL over less often: a woken thread waits up to 10 ms for it, as on a busy CPU.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.01)

    def worker(n: int) -> None:
        try:
            run_number(sender.pk, worker_id=f"w{n}", max_seconds=40, until_idle=True)
        finally:
            connection.close()

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for thread in hogs + workers:
        thread.start()
    try:
        for thread in workers:
            thread.join(timeout=90)
    finally:
        stop.set()
        for thread in hogs:
            thread.join()
        sys.setswitchinterval(switch_interval)

    stats = sim.stats()
    # Without the guard these slots draw a 130429 for about one send in twenty. With it, only
    # the simulator's own stalls can squeeze our starts together (it stamps a request when its
    # loop gets to it; on a loaded 2-core machine that may be 100 ms late): a rare one.
    assert stats["errors"].get("130429", 0) <= 3
    assert stats["max_accepted_1s_by_number"][sender.phone_number_id] <= 60
    assert stats["callbacks"]["exactly_once"] == 300
    campaign.refresh_from_db()
    assert (campaign.status, campaign.sent) == (Campaign.Status.COMPLETED, 300)


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "local"])
def test_the_guard_never_hands_out_more_than_the_cap_per_window(redis_client, shared):
    # Slots twice as fast as the cap allows (a wrong rate, or a pause that ended): the guard
    # moves the sixth slot to when the first has left the window.
    if shared:
        first, second = _bucket(target=10, cap=5), _bucket(target=10, cap=5)  # two workers
    else:
        first = second = LocalBucket(target=10, cap=5)
    offsets = first.reserve(3, now=100.0).offsets + second.reserve(5, now=100.0).offsets
    assert offsets[:5] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert offsets[5] == pytest.approx(GUARD_WINDOW)
    starts = sorted(offsets)
    for i, start in enumerate(starts):
        assert sum(1 for other in starts[i:] if other < start + GUARD_WINDOW) <= 5


def test_an_isolated_throttle_trims_the_rate_slightly_and_briefly(redis_client):
    bucket = _bucket()
    assert bucket.reserve(1, now=100.0).rate == 190.0
    rate = bucket.throttled(latency=0.1, now=100.0)
    assert 0.99 * 190 <= rate < 190
    assert bucket.recover(now=100.0 + QUIET / 2) is None  # still within the quiet time
    assert bucket.recover(now=100.0 + QUIET + 0.01) == 190.0
    assert bucket.reserve(1, now=103.0).rate == 190.0


def test_sustained_throttling_converges_to_the_real_cap_and_recovers_when_it_lifts(
    redis_client,
):
    bucket = _bucket()
    now, rate = 100.0, 190.0
    # The real cap is 120: every second at `rate` brings about rate - 120 throttles.
    for _second in range(10):
        over = max(0, round(rate - 120))
        for i in range(over):
            rate = bucket.throttled(latency=0.1, now=now + i / max(over, 1))
        now += 1.0
    assert 105 <= rate <= 121
    # Probing above the ceiling, then a throttle there, sends it back to the cap, not lower.
    settled = rate
    now += QUIET
    probe = bucket.recover(now=now)
    assert probe is not None and settled < probe <= settled + 0.02 * 190
    # The cap lifts: without throttles the rate is back at the target within seconds.
    for _step in range(12):
        now += STEP_INTERVAL
        bucket.recover(now=now)
    assert bucket.reserve(1, now=now).rate == 190.0


def test_a_lowered_simulator_cap_is_found_and_held(sim, sender, template):
    sender.rate_mps = 100  # target 90/s; the simulator cuts the real cap to 40 mid-run
    sender.save()
    sim.configure(mps_overrides={sender.phone_number_id: 100})
    make_campaign(sender=sender, templates=[template], contacts=450)
    done = threading.Event()

    def lower_the_cap() -> None:
        while not done.is_set() and sim.stats()["accepted"] < 100:
            time.sleep(0.05)
        sim.configure(mps_overrides={sender.phone_number_id: 40})

    lowering = threading.Thread(target=lower_the_cap)
    lowering.start()
    watch: dict[str, int] = {}

    def watch_second_half() -> None:
        while not done.is_set():
            stats = sim.stats()
            if stats["accepted"] >= 300 and not watch:
                watch.update(accepted=stats["accepted"], throttled=_throttled(stats))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_second_half)
    watcher.start()
    try:
        run_number(sender.pk, worker_id="t", max_seconds=60, until_idle=True)
    finally:
        done.set()
        lowering.join()
        watcher.join()

    stats = sim.stats()
    assert stats["callbacks"]["exactly_once"] == 450 and stats["callbacks"]["more_than_once"] == 0
    assert _throttled(stats) > 0  # the lower cap was met...
    # ...and held: the last sends (after the first 300) were rarely throttled.
    late_sends = stats["accepted"] - watch["accepted"]
    assert _throttled(stats) - watch["throttled"] <= 0.1 * late_sends
    sender.refresh_from_db()
    assert 25 <= sender.learned_rate <= 48  # near the real 40, remembered for a restart


def _throttled(stats) -> int:
    return stats["errors"].get("130429", 0)


@pytest.mark.parametrize("latency_ms", [20, 600])
def test_in_flight_grows_with_the_measured_latency(sim, sender, template, latency_ms):
    sender.rate_mps = 100  # target 90/s
    sender.save()
    sim.configure(latency_ms=latency_ms, jitter_ms=0)
    make_campaign(sender=sender, templates=[template], contacts=150)

    number = NumberSender(sender.pk, worker_id="t")
    number.run(max_seconds=30, until_idle=True)

    assert sim.stats()["callbacks"]["exactly_once"] == 150
    needed = 90 * latency_ms / 1000  # Little's law: rate × latency
    assert number.latency_p95 >= latency_ms / 1000
    assert number.max_in_flight >= needed
    assert number.max_in_flight <= needed * 1.5 + 20


def test_a_joining_worker_claims_its_share_from_the_start(sender, redis_client):
    sender.rate_mps = 100
    sender.save()
    first = NumberSender(sender.pk, worker_id="a")
    second = NumberSender(sender.pk, worker_id="b")
    assert first.own_rate == pytest.approx(90)
    assert second.own_rate == pytest.approx(45)  # 2 workers serve the number now


def test_the_first_retry_comes_after_about_a_second(settings):
    settings.SENDER_RETRY_JITTER = 0.0
    settings.SENDER_RETRY_FIRST_SECONDS = 1.0
    settings.SENDER_RETRY_BASE_SECONDS = 5.0
    assert [backoff_seconds(n) for n in (1, 2, 3, 4)] == [1.0, 5.0, 10.0, 20.0]

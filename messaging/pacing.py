"""Pacing: one rate per sender number, shared by every worker process through Redis.

Three pieces, each one Lua script (atomic, timed by the Redis server's clock):

- **Slots** (GCRA, "virtual scheduling"): the bucket keeps the theoretical arrival time (TAT)
  of the next free slot; a worker reserves `n` slots at once and sends them 1/rate apart. No
  burst after idle.
- **The guard**, in the same script: every slot handed out, by any worker, is kept in a sliding
  window, and a slot is only handed out while the GUARD_WINDOW before it holds fewer than the
  number's cap (otherwise it moves to when the window has room). A send starts at its slot or
  gives the slot up (the sender's LATE_START), so whatever the configured rate, a throttle
  pause or a scheduling stall, our starts never put more than the cap into a second. The window
  is longer than one second by a margin for that lateness and for requests that reach the API
  later than others (a starved client, the network).
- **The rate** follows the evidence. Each 130429 means about one send over the real cap in
  that second, so it trims the rate by about one message/s (divided by 1 + the latency, since
  throttles keep arriving for a latency after the fix): an isolated throttle costs a fraction of
  a percent; sustained throttling (a lower real cap) walks the rate down to it within seconds
  and marks it as the number's ceiling. After QUIET seconds without a throttle the rate climbs
  back: fast up to the ceiling, then probing above it in doubling steps up to the target. The
  learned rate is kept in Redis and stored on the SenderNumber, so a restart resumes from it.

Each worker also keeps a heartbeat in Redis, so the number's rate can be shared by the number of
workers serving it from a worker's first claim.

While Redis cannot be reached the number's bucket is a PostgreSQL row, shared the same way
(messaging/pacing_failover.py). Without Redis at all (the SQLite quickstart) a single process
keeps the same state in memory. Every
method takes an optional `now` (seconds) for tests; without it the server's clock is used.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from redis import Redis

    from campaigns.models import SenderNumber

MIN_RATE = 0.5
# Throttle response: a trim of THROTTLE_TRIM msg/s (÷ 1 + latency) per 130429 answer; from
# the SUSTAINED-th throttle of one episode on (throttles less than EPISODE_GAP apart), the rate
# reached is the number's ceiling.
THROTTLE_TRIM = 1.0
SUSTAINED = 3
EPISODE_GAP = 2.0
# Recovery: after QUIET seconds without a throttle, one step every STEP_INTERVAL seconds.
QUIET = 2.0
STEP_INTERVAL = 1.0
FAST_STEP = 0.1  # × target per step, up to the ceiling
PROBE_STEP = 0.01  # × target, doubling with each clean step above the ceiling
GUARD_WINDOW = 1.1
HEARTBEAT_TTL = 5.0


@dataclass(frozen=True, slots=True)
class Reservation:
    offsets: list[float]  # seconds from now of each reserved slot (ascending)
    rate: float  # the number's current rate

    @property
    def delay(self) -> float:
        return self.offsets[0] if self.offsets else 0.0


class Bucket(Protocol):
    def reserve(self, n: int, *, now: float | None = None) -> Reservation: ...
    def throttled(self, *, latency: float = 0.0, now: float | None = None) -> float: ...
    def recover(self, *, now: float | None = None) -> float | None: ...
    def serving(self, worker_id: str, *, now: float | None = None) -> int: ...


# Every script starts with the clock: ARGV[1] is a test's `now`, or -1 for the server's TIME.
_NOW = """
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

# KEYS = bucket hash, guard sorted set. ARGV = now, target rate, initial rate (learned or
# target), n, cap, guard window. Returns the rate and the offsets from now of the n slots.
_RESERVE = (
    _NOW
    + """
local target = tonumber(ARGV[2])
local n, cap, window = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local rate = tonumber(redis.call('HGET', KEYS[1], 'rate') or ARGV[3])
if rate > target then rate = target end
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0')
if tat < now then tat = now end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
local result = {tostring(rate)}
for i = 1, n do
  -- Slots only ever move forward, so the window before `tat` is everything after tat - window.
  local since = '(' .. string.format('%.17g', tat - window)
  while redis.call('ZCOUNT', KEYS[2], since, '+inf') >= cap do
    local oldest = redis.call('ZRANGEBYSCORE', KEYS[2], since, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    tat = tonumber(oldest[2]) + window + 0.000001
    since = '(' .. string.format('%.17g', tat - window)
  end
  redis.call('ZADD', KEYS[2], tat, string.format('%.17g', tat))
  result[i + 1] = tostring(tat - now)
  tat = tat + 1 / rate
end
redis.call('HSET', KEYS[1], 'tat', tostring(tat), 'rate', tostring(rate))
redis.call('EXPIRE', KEYS[1], 604800)
redis.call('PEXPIRE', KEYS[2], math.ceil(window * 1000) + 60000)
return result
"""
)

# ARGV = now, target, initial, trim, sustained, episode gap, min rate. Returns the new rate.
_THROTTLED = (
    _NOW
    + """
local target = tonumber(ARGV[2])
local rate = tonumber(redis.call('HGET', KEYS[1], 'rate') or ARGV[3])
local ceiling = tonumber(redis.call('HGET', KEYS[1], 'ceiling') or ARGV[3])
local last = tonumber(redis.call('HGET', KEYS[1], 'throttled') or '-1e18')
local episode = tonumber(redis.call('HGET', KEYS[1], 'episode') or '0')
if now - last > tonumber(ARGV[6]) then episode = 0 end
episode = episode + 1
rate = math.max(tonumber(ARGV[7]), math.min(rate, target) - tonumber(ARGV[4]))
if episode >= tonumber(ARGV[5]) and rate < ceiling then ceiling = rate end
redis.call('HSET', KEYS[1], 'rate', tostring(rate), 'ceiling', tostring(ceiling),
           'throttled', tostring(now), 'episode', tostring(episode), 'streak', '0')
redis.call('EXPIRE', KEYS[1], 604800)
return tostring(rate)
"""
)

# ARGV = now, target, initial, quiet, step interval, fast step, probe step. New rate or nil.
_RECOVER = (
    _NOW
    + """
local target = tonumber(ARGV[2])
local rate = tonumber(redis.call('HGET', KEYS[1], 'rate') or ARGV[3])
if rate >= target then return false end
local last = tonumber(redis.call('HGET', KEYS[1], 'throttled') or '-1e18')
local changed = tonumber(redis.call('HGET', KEYS[1], 'changed') or '-1e18')
if now - last < tonumber(ARGV[4]) or now - changed < tonumber(ARGV[5]) then return false end
local ceiling = tonumber(redis.call('HGET', KEYS[1], 'ceiling') or ARGV[3])
local streak = tonumber(redis.call('HGET', KEYS[1], 'streak') or '0')
if rate < ceiling then
  rate = math.min(ceiling, rate + target * tonumber(ARGV[6]))
else
  rate = math.min(target, rate + target * tonumber(ARGV[7]) * 2 ^ streak)
  streak = streak + 1
  if rate > ceiling then ceiling = rate end
end
redis.call('HSET', KEYS[1], 'rate', tostring(rate), 'ceiling', tostring(ceiling),
           'changed', tostring(now), 'streak', tostring(streak))
return tostring(rate)
"""
)

# KEYS[1] = heartbeat sorted set. ARGV = now, worker id, ttl. Returns the workers alive.
_SERVING = (
    _NOW
    + """
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) * 2000))
return redis.call('ZCARD', KEYS[1])
"""
)


# KEYS[1] = bucket hash. ARGV = now, offset, rate, ceiling. The bucket after an outage: its
# next slot no sooner than `offset` s from now (where PostgreSQL's bucket had got to), at the
# rate PostgreSQL had; the throttle episode starts afresh.
_SEED = (
    _NOW
    + """
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0')
local from = now + tonumber(ARGV[2])
if tat < from then tat = from end
redis.call('HSET', KEYS[1], 'tat', tostring(tat), 'rate', ARGV[3], 'ceiling', ARGV[4])
redis.call('HDEL', KEYS[1], 'throttled', 'episode', 'streak', 'changed')
redis.call('EXPIRE', KEYS[1], 604800)
return 1
"""
)


def _clock(now: float | None) -> float:
    return -1.0 if now is None else now


def _trim(latency: float) -> float:
    return THROTTLE_TRIM / (1.0 + max(0.0, latency))


class RedisBucket:
    """The shared bucket of one sender number; atomic because each step is one Lua script."""

    def __init__(
        self, client: Redis, *, key: str, target: float, cap: float, initial: float | None = None
    ) -> None:
        self.key = key
        self.target = target
        self.cap = cap
        self.initial = min(initial or target, target)
        self._reserve = client.register_script(_RESERVE)
        self._throttled = client.register_script(_THROTTLED)
        self._recover = client.register_script(_RECOVER)
        self._serving = client.register_script(_SERVING)
        self._seed = client.register_script(_SEED)
        self.client = client

    def reserve(self, n: int, *, now: float | None = None) -> Reservation:
        args = [_clock(now), self.target, self.initial, n, self.cap, GUARD_WINDOW]
        rate, *offsets = self._reserve(keys=[self.key, self.key + ":guard"], args=args)
        return Reservation([float(o) for o in offsets], float(rate))

    def throttled(self, *, latency: float = 0.0, now: float | None = None) -> float:
        args = [_clock(now), self.target, self.initial, _trim(latency), SUSTAINED, EPISODE_GAP]
        return float(self._throttled(keys=[self.key], args=[*args, MIN_RATE]))

    def recover(self, *, now: float | None = None) -> float | None:
        args = [_clock(now), self.target, self.initial, QUIET, STEP_INTERVAL, FAST_STEP]
        rate = self._recover(keys=[self.key], args=[*args, PROBE_STEP])
        return float(rate) if rate else None

    def serving(self, worker_id: str, *, now: float | None = None) -> int:
        args: list[str | float] = [_clock(now), worker_id, HEARTBEAT_TTL]
        return int(self._serving(keys=[self.key + ":workers"], args=args))

    def seed(self, *, offset: float, rate: float, ceiling: float) -> None:
        """Take over from PostgreSQL: no slot sooner than `offset` s from now."""
        self._seed(keys=[self.key], args=[-1.0, offset, rate, ceiling])

    def ping(self) -> bool:
        return bool(self.client.ping())


@dataclass(slots=True)
class RateState:
    """The adaptive part of a bucket (rate, ceiling, throttle episode), for the Python buckets.

    The Redis scripts above apply the same two steps in Lua; LocalBucket and the PostgreSQL
    bucket (messaging/pacing_failover.py) call `throttle_step` and `recover_step`.
    """

    rate: float
    ceiling: float
    throttled_at: float = float("-inf")
    changed: float = float("-inf")
    episode: int = 0
    streak: int = 0


def throttle_step(state: RateState, *, target: float, latency: float, now: float) -> float:
    """One 130429 answer: trim the rate; the SUSTAINED-th of an episode sets the ceiling."""
    if now - state.throttled_at > EPISODE_GAP:
        state.episode = 0
    state.episode += 1
    state.rate = max(MIN_RATE, min(state.rate, target) - _trim(latency))
    if state.episode >= SUSTAINED:
        state.ceiling = min(state.ceiling, state.rate)
    state.throttled_at, state.streak = now, 0
    return state.rate


def recover_step(state: RateState, *, target: float, now: float) -> float | None:
    """After QUIET s without a throttle, one step up per STEP_INTERVAL; the new rate or None."""
    if state.rate >= target:
        return None
    if now - state.throttled_at < QUIET or now - state.changed < STEP_INTERVAL:
        return None
    if state.rate < state.ceiling:
        state.rate = min(state.ceiling, state.rate + target * FAST_STEP)
    else:
        state.rate = min(target, state.rate + target * PROBE_STEP * 2**state.streak)
        state.streak += 1
        state.ceiling = max(state.ceiling, state.rate)
    state.changed = now
    return state.rate


class LocalBucket:
    """The same algorithms for one process, when there is no Redis."""

    def __init__(self, *, target: float, cap: float, initial: float | None = None) -> None:
        self.target = target
        self.cap = cap
        rate = min(initial or target, target)
        self.state = RateState(rate=rate, ceiling=rate)
        self.tat = 0.0
        self.slots: deque[float] = deque()  # the guard: slots handed out lately
        self._lock = threading.Lock()

    @property
    def rate(self) -> float:
        return self.state.rate

    def reserve(self, n: int, *, now: float | None = None) -> Reservation:
        with self._lock:
            now = time.monotonic() if now is None else now
            tat = max(self.tat, now)
            slots = self.slots
            while slots and slots[0] <= now - GUARD_WINDOW:
                slots.popleft()
            offsets = []
            for _ in range(n):
                while len(slots) >= self.cap and slots[-int(self.cap)] > tat - GUARD_WINDOW:
                    tat = slots[-int(self.cap)] + GUARD_WINDOW + 1e-6
                slots.append(tat)
                offsets.append(tat - now)
                tat += 1 / self.state.rate
            self.tat = tat
            return Reservation(offsets, self.state.rate)

    def throttled(self, *, latency: float = 0.0, now: float | None = None) -> float:
        with self._lock:
            now = time.monotonic() if now is None else now
            return throttle_step(self.state, target=self.target, latency=latency, now=now)

    def recover(self, *, now: float | None = None) -> float | None:
        with self._lock:
            now = time.monotonic() if now is None else now
            return recover_step(self.state, target=self.target, now=now)

    def serving(self, worker_id: str, *, now: float | None = None) -> int:
        return 1  # without Redis there is one process


_local_buckets: dict[int, LocalBucket] = {}
_local_lock = threading.Lock()


def bucket_for(
    *, sender_id: int, target: float, cap: float, initial: float | None, worker_id: str = ""
) -> Bucket:
    """The bucket of a sender number: Redis when REDIS_URL is set (PostgreSQL while Redis is
    unreachable, messaging/pacing_failover.py), else this process's own."""
    from django.conf import settings
    from django.db import connection

    if settings.REDIS_URL:
        from messaging.redis_client import get_redis

        shared = RedisBucket(
            get_redis(), key=f"wac:pace:{sender_id}", target=target, cap=cap, initial=initial
        )
        if connection.vendor != "postgresql":
            return shared
        from messaging.pacing_failover import FailoverBucket, PostgresBucket

        return FailoverBucket(
            shared,
            PostgresBucket(sender_id=sender_id, target=target, cap=cap),
            worker_id=worker_id or f"{id(shared):x}",
            initial=shared.initial,
        )
    with _local_lock:
        bucket = _local_buckets.get(sender_id)
        if bucket is None or bucket.target != target or bucket.cap != cap:
            bucket = LocalBucket(target=target, cap=cap, initial=initial)
            _local_buckets[sender_id] = bucket
        return bucket


def starting_rate(number: SenderNumber) -> float:
    """The rate a sender loop starts a number at (msg/s): its learned rate, within the
    configured rate less the headroom. The launch plan's ETA uses the same figure."""
    from django.conf import settings

    target = number.rate_mps * settings.SENDER_RATE_HEADROOM
    return min(number.learned_rate or target, target)

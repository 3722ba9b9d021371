"""Pacing: one rate per sender number, shared by every worker process through Redis.

A reservation scheduler (GCRA in its "virtual scheduling" form): the bucket keeps the
theoretical arrival time (TAT) of the next free slot; a worker reserves `n` slots at once and
sends them 1/rate apart from the returned start. No burst is allowed after idle, so no second
ever carries more than the rate plus one message. Throttling (130429) lowers the rate ×0.7 at
most once a second; after 10 s without throttling it climbs back by 5 % of the target, never
above it (AIMD, as botocore's adaptive retry). The learned rate is kept in Redis and stored on
the SenderNumber, so a restart (even of Redis) resumes from it.

Without Redis (the SQLite quickstart) a single process keeps the same state in memory.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol

DECREASE_FACTOR = 0.7
DECREASE_MIN_INTERVAL = 1.0
# A throttle answer also stops the number this long, so the API's window can clear.
THROTTLE_PAUSE = 1.0
INCREASE_STEP = 0.05
INCREASE_INTERVAL = 10.0
MIN_RATE = 0.5


@dataclass(frozen=True, slots=True)
class Reservation:
    delay: float  # seconds from now until the first reserved slot
    rate: float  # the rate the slots are spaced at


class Bucket(Protocol):
    def reserve(self, n: int) -> Reservation: ...
    def throttled(self) -> float: ...
    def recover(self) -> float | None: ...


# KEYS[1] = bucket hash. ARGV = target rate, initial rate (learned or target), n.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local target = tonumber(ARGV[1])
local rate = tonumber(redis.call('HGET', KEYS[1], 'rate') or ARGV[2])
if rate > target then rate = target end
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0')
if tat < now then tat = now end
local start = tat
tat = tat + tonumber(ARGV[3]) / rate
redis.call('HSET', KEYS[1], 'tat', tostring(tat), 'rate', tostring(rate))
redis.call('EXPIRE', KEYS[1], 604800)
return {tostring(start - now), tostring(rate)}
"""

# ARGV = target, initial rate, factor, min interval, pause, min rate. Returns the new rate.
_THROTTLED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(redis.call('HGET', KEYS[1], 'rate') or ARGV[2])
local last = tonumber(redis.call('HGET', KEYS[1], 'changed') or '0')
if now - last >= tonumber(ARGV[4]) then
  rate = math.max(tonumber(ARGV[6]), rate * tonumber(ARGV[3]))
  local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0')
  if tat < now + tonumber(ARGV[5]) then tat = now + tonumber(ARGV[5]) end
  redis.call('HSET', KEYS[1], 'rate', tostring(rate), 'changed', tostring(now),
             'throttled', tostring(now), 'tat', tostring(tat))
  redis.call('EXPIRE', KEYS[1], 604800)
end
return tostring(rate)
"""

# ARGV = target, initial rate, step (fraction of target), interval. Returns the new rate or nil.
_RECOVER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local target = tonumber(ARGV[1])
local rate = tonumber(redis.call('HGET', KEYS[1], 'rate') or ARGV[2])
local last = tonumber(redis.call('HGET', KEYS[1], 'changed') or '0')
if rate >= target or now - last < tonumber(ARGV[4]) then return false end
rate = math.min(target, rate + target * tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'rate', tostring(rate), 'changed', tostring(now))
return tostring(rate)
"""


class RedisBucket:
    """The shared bucket of one sender number; atomic because each step is one Lua script."""

    def __init__(self, client, *, key: str, target: float, initial: float | None = None) -> None:
        self.key = key
        self.target = target
        self.initial = min(initial or target, target)
        self._reserve = client.register_script(_RESERVE)
        self._throttled = client.register_script(_THROTTLED)
        self._recover = client.register_script(_RECOVER)

    def reserve(self, n: int) -> Reservation:
        delay, rate = self._reserve(keys=[self.key], args=[self.target, self.initial, n])
        return Reservation(float(delay), float(rate))

    def throttled(self) -> float:
        args = [self.target, self.initial, DECREASE_FACTOR, DECREASE_MIN_INTERVAL]
        return float(self._throttled(keys=[self.key], args=[*args, THROTTLE_PAUSE, MIN_RATE]))

    def recover(self) -> float | None:
        args = [self.target, self.initial, INCREASE_STEP, INCREASE_INTERVAL]
        rate = self._recover(keys=[self.key], args=args)
        return float(rate) if rate else None


class LocalBucket:
    """The same algorithm for one process, when there is no Redis."""

    def __init__(self, *, target: float, initial: float | None = None) -> None:
        self.target = target
        self.rate = min(initial or target, target)
        self.tat = 0.0
        self.changed = 0.0
        self._lock = threading.Lock()

    def reserve(self, n: int) -> Reservation:
        with self._lock:
            now = time.monotonic()
            start = max(self.tat, now)
            self.tat = start + n / self.rate
            return Reservation(start - now, self.rate)

    def throttled(self) -> float:
        with self._lock:
            now = time.monotonic()
            if now - self.changed >= DECREASE_MIN_INTERVAL:
                self.rate = max(MIN_RATE, self.rate * DECREASE_FACTOR)
                self.changed = now
                self.tat = max(self.tat, now + THROTTLE_PAUSE)
            return self.rate

    def recover(self) -> float | None:
        with self._lock:
            now = time.monotonic()
            if self.rate >= self.target or now - self.changed < INCREASE_INTERVAL:
                return None
            self.rate = min(self.target, self.rate + self.target * INCREASE_STEP)
            self.changed = now
            return self.rate


_local_buckets: dict[int, LocalBucket] = {}
_local_lock = threading.Lock()


def bucket_for(*, sender_id: int, target: float, initial: float | None) -> Bucket:
    """The bucket of a sender number: Redis when REDIS_URL is set, else this process's own."""
    from django.conf import settings

    if settings.REDIS_URL:
        from messaging.redis_client import get_redis

        return RedisBucket(get_redis(), key=f"wac:pace:{sender_id}", target=target, initial=initial)
    with _local_lock:
        bucket = _local_buckets.get(sender_id)
        if bucket is None or bucket.target != target:
            bucket = _local_buckets[sender_id] = LocalBucket(target=target, initial=initial)
        return bucket

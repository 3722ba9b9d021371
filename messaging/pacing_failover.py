"""Pacing without Redis: a sender number's bucket moves to PostgreSQL and back.

The bucket (messaging/pacing.py) lives in Redis. When a worker cannot reach Redis, the number
is paced by its row in `messaging_pacingstate` instead, for every worker on every machine:

- **One authority per number.** The row's `mode` says which store hands out the number's
  slots. The first worker that loses Redis switches it to "postgres"; a worker still on Redis
  reads the mode once per MODE_CHECK_INTERVAL and follows. Only one store ever hands out slots
  after a switch, so the cap holds across all workers.
- **Slots from PostgreSQL** come in chunks, one statement each: the row is locked
  (`SELECT … FOR UPDATE` in the statement), its theoretical arrival time (GCRA, on
  PostgreSQL's clock) advances by the chunk, and the worker sends the chunk's slots 1/rate
  apart as it does with Redis. Instead of Redis' sliding-window guard the pace never exceeds
  (cap − 1) / GUARD_WINDOW, which keeps any guard window under the cap by construction.
- **Into PostgreSQL** (Redis lost): Redis' own state cannot be read any more, so no slot is
  handed out before every worker that was serving (their count from the last heartbeat) has
  joined and declared where its last Redis slot lies, or, failing that, for GRACE seconds
  (long enough for a worker still on Redis to see the new mode and for its last Redis chunk
  to pass). PostgreSQL's first slot comes after the latest of those.
- **Back to Redis** (it answers again): a worker on PostgreSQL pings Redis every
  PROBE_INTERVAL. Once no worker has failed to reach it for QUIET_RETURN seconds, one worker,
  holding the row lock, seeds Redis' bucket to start after PostgreSQL's last slot (and at its
  rate) and sets the mode back to "redis"; the others see that at their next chunk and follow.

So a switch costs at most a fraction of a second of sending, never a burst. While the
number is on PostgreSQL each worker spends about one short statement per chunk (20 a second).
Throttle answers (130429) still trim the shared rate: they are counted by the send threads and
written to the row by the flusher's next recover() call, so no send thread needs a database
connection of its own.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

import redis
from django.db import connection, transaction
from django.utils import timezone

from messaging.models import PacingState
from messaging.pacing import (
    GUARD_WINDOW,
    MIN_RATE,
    RateState,
    RedisBucket,
    Reservation,
    _trim,
    recover_step,
    throttle_step,
)

logger = logging.getLogger(__name__)

# A worker on Redis reads its number's mode this often: one indexed read, which at 80 msg/s
# costs 0.007 statements per message (the engine's floor is 0.05, docs/benchmarks.md).
MODE_CHECK_INTERVAL = 2.0
PROBE_INTERVAL = 1.0  # a worker on PostgreSQL pings Redis this often
QUIET_RETURN = 3.0  # back to Redis once no worker failed to reach it for this long
# Into PostgreSQL without every worker's word: a worker still on Redis sees the mode within
# MODE_CHECK_INTERVAL, and its last Redis chunk (CHUNK_SECONDS each, one per worker, in
# messaging/sender.py) ends soon after.
GRACE = MODE_CHECK_INTERVAL + 0.25
GRACE_POLL = 0.05  # a reservation in the grace period looks again this often
SECONDS_AGO = -1e9  # "no Redis slot to wait for"

_TABLE = PacingState._meta.db_table

# One statement: lock the row, hand out `n` slots if the number is on PostgreSQL and out of its
# grace period, and register this worker. No row back = the number is not on PostgreSQL.
_RESERVE_SQL = f"""
WITH cur AS (
    SELECT sender_id, tat, rate, grace_until, expected_workers, pg_workers,
           extract(epoch FROM clock_timestamp())::float8 AS now
    FROM {_TABLE} WHERE sender_id = %(sender)s AND mode = 'postgres' FOR UPDATE
), joined AS (
    SELECT cur.*,
           CASE WHEN pg_workers ? %(worker)s THEN pg_workers
                ELSE pg_workers || to_jsonb(%(worker)s::text) END AS workers,
           least(rate, %(max_pace)s) AS pace
    FROM cur
), go AS (
    SELECT joined.*,
           greatest(tat, now, now + %(not_before)s) AS start,
           (jsonb_array_length(workers) >= expected_workers OR now >= grace_until) AS open
    FROM joined
)
UPDATE {_TABLE} AS p SET
    pg_workers = go.workers,
    tat = CASE WHEN go.open THEN go.start + %(n)s / go.pace ELSE go.start END,
    redis_failed_at = CASE WHEN %(failed)s THEN go.now ELSE p.redis_failed_at END
FROM go WHERE p.sender_id = go.sender_id
RETURNING go.open, go.start - go.now, go.pace, go.grace_until - go.now, go.now
"""  # noqa: S608 (the table name is ours)


@dataclass(frozen=True, slots=True)
class _Slots:
    open: bool
    first: float  # offset from now of the first slot
    pace: float
    wait: float  # seconds left of the grace period (when not open)
    now: float  # PostgreSQL's clock when the slots were taken


def max_pace(cap: float) -> float:
    """The fastest pace PostgreSQL hands out: any GUARD_WINDOW then holds fewer than `cap`."""
    return max(MIN_RATE, (cap - 1) / GUARD_WINDOW)


class PostgresBucket:
    """The number's bucket in its PacingState row (PostgreSQL only)."""

    def __init__(self, *, sender_id: int, target: float, cap: float) -> None:
        self.sender_id = sender_id
        self.target = target
        self.cap = cap

    def reserve(
        self, n: int, *, worker: str, not_before: float = SECONDS_AGO, failed: bool = False
    ) -> _Slots | None:
        """`n` slots, or None when the number is paced by Redis. `not_before`: offset from
        now of this worker's last Redis slot; `failed`: this worker just failed to reach Redis."""
        params: dict[str, float | int | str | bool] = {
            "sender": self.sender_id,
            "worker": worker,
            "max_pace": max_pace(self.cap),
            "not_before": not_before,
            "n": n,
            "failed": failed,
        }
        with connection.cursor() as cursor:
            cursor.execute(_RESERVE_SQL, params)
            row = cursor.fetchone()
        if row is None:
            return None
        is_open, first, pace, wait, now = row
        return _Slots(bool(is_open), float(first), float(pace), float(wait), float(now))

    def mode(self) -> str:
        with connection.cursor() as cursor:
            sql = f"SELECT mode FROM {_TABLE} WHERE sender_id = %s"  # noqa: S608
            cursor.execute(sql, [self.sender_id])
            row = cursor.fetchone()
        return row[0] if row else PacingState.Mode.REDIS

    def take_over(self, *, rate: float, serving: int) -> bool:
        """Switch the number to PostgreSQL (Redis is lost); False if it already was."""
        with transaction.atomic():
            PacingState.objects.get_or_create(sender_id=self.sender_id)
            state = PacingState.objects.select_for_update().get(sender_id=self.sender_id)
            if state.mode == PacingState.Mode.POSTGRES:
                return False
            now = _pg_now()
            rate = max(MIN_RATE, min(rate, self.target))
            state.mode, state.since = PacingState.Mode.POSTGRES, timezone.now()
            state.tat = max(state.tat, now)
            state.rate = state.ceiling = rate
            state.throttled_at = state.changed_at = 0.0
            state.episode = state.streak = 0
            state.grace_until = now + GRACE
            state.expected_workers = max(1, serving)
            state.pg_workers = []
            state.redis_failed_at = now
            state.save()
            return True

    def hand_back(self, redis_bucket: RedisBucket) -> bool | None:
        """Give the number back to Redis; True once it is Redis' (None: not quiet yet)."""
        with transaction.atomic():
            state = PacingState.objects.select_for_update().filter(sender_id=self.sender_id).first()
            if state is None or state.mode == PacingState.Mode.REDIS:
                return True
            now = _pg_now()
            if now - state.redis_failed_at < QUIET_RETURN:
                return None
            # Under the row lock nobody takes a PostgreSQL slot meanwhile; Redis' first slot
            # comes after the last one handed out here.
            redis_bucket.seed(offset=state.tat - now, rate=state.rate, ceiling=state.ceiling)
            state.mode, state.since = PacingState.Mode.REDIS, timezone.now()
            state.pg_workers = []
            state.save(update_fields=["mode", "since", "pg_workers"])
            return True

    def adapt(self, throttles: list[float], *, recover: bool) -> tuple[float | None, float | None]:
        """Apply throttle answers (their latencies) and one recovery step to the row.

        Returns (the rate now, the new rate if recovery changed it); (None, None) when the
        number is not on PostgreSQL (any more)."""
        with transaction.atomic():
            state = PacingState.objects.select_for_update().filter(sender_id=self.sender_id).first()
            if state is None or state.mode != PacingState.Mode.POSTGRES:
                return None, None
            rates = RateState(
                state.rate,
                state.ceiling,
                state.throttled_at,
                state.changed_at,
                state.episode,
                state.streak,
            )
            now = _pg_now()
            for latency in throttles:
                throttle_step(rates, target=self.target, latency=latency, now=now)
            recovered = recover_step(rates, target=self.target, now=now) if recover else None
            if throttles or recovered is not None:
                state.rate, state.ceiling = rates.rate, rates.ceiling
                state.throttled_at, state.changed_at = rates.throttled_at, rates.changed
                state.episode, state.streak = rates.episode, rates.streak
                state.save(
                    update_fields=[
                        "rate",
                        "ceiling",
                        "throttled_at",
                        "changed_at",
                        "episode",
                        "streak",
                    ]
                )
            return rates.rate, recovered


def _pg_now() -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT extract(epoch FROM clock_timestamp())::float8")
        return float(cursor.fetchone()[0])


class FailoverBucket:
    """A number's bucket for one worker: Redis while it answers, PostgreSQL while it does not.

    reserve() runs on the pacer's thread, serving() on the feeder's, recover() on the
    flusher's, throttled() on the send threads': only the first and third touch PostgreSQL
    (each thread has its own connection).
    """

    def __init__(
        self, redis_bucket: RedisBucket, pg: PostgresBucket, *, worker_id: str, initial: float
    ) -> None:
        self.redis = redis_bucket
        self.pg = pg
        self.worker_id = worker_id
        self.target = pg.target
        self.rate = initial
        self.on_pg = False
        self.serving_count = 1
        self.last_slot = -math.inf  # monotonic time after this worker's last Redis slot
        self.redis_failed = False  # a failure the pacer has yet to act on / report
        self.next_mode_check = 0.0
        self.next_probe = 0.0
        self._throttles: list[float] = []
        self._lock = threading.Lock()

    # --- the pacer's thread ---------------------------------------------------------------
    def reserve(self, n: int, *, now: float | None = None) -> Reservation:
        while True:
            if not self.on_pg:
                reservation = self._reserve_redis(n, now)
                if reservation is not None:
                    return reservation
            else:
                reservation = self._reserve_pg(n)
                if reservation is not None:
                    return reservation

    def _reserve_redis(self, n: int, now: float | None) -> Reservation | None:
        clock = time.monotonic()
        if clock >= self.next_mode_check:
            self.next_mode_check = clock + MODE_CHECK_INTERVAL
            if self._mode_is_postgres():
                self._switched(to_pg=True, why="another worker lost Redis")
                return None
        if not self.redis_failed:
            try:
                reservation = self.redis.reserve(n, now=now)
            except redis.RedisError as exc:
                logger.warning("sender %s: Redis unreachable (%s)", self.pg.sender_id, exc)
            else:
                self.rate = reservation.rate
                if reservation.offsets:
                    end = reservation.offsets[-1] + 1 / max(reservation.rate, MIN_RATE)
                    self.last_slot = time.monotonic() + end
                return reservation
        self.pg.take_over(rate=self.rate, serving=self.serving_count)
        self.redis_failed = True  # reported with the first PostgreSQL reservation
        self.next_probe = time.monotonic() + PROBE_INTERVAL
        self._switched(to_pg=True, why="Redis unreachable")
        return None

    def _mode_is_postgres(self) -> bool:
        try:
            return self.pg.mode() == PacingState.Mode.POSTGRES
        except Exception:  # the database away: Redis paces on, the mode is read next time
            logger.debug("pacing mode not read", exc_info=True)
            connection.close()
            return False

    def _reserve_pg(self, n: int) -> Reservation | None:
        clock = time.monotonic()
        if clock >= self.next_probe:
            self.next_probe = clock + PROBE_INTERVAL
            if self._redis_answers():
                try:
                    back = self.pg.hand_back(self.redis)
                except redis.RedisError:
                    back, self.redis_failed = None, True
                if back:
                    self.redis_failed = False
                    self._switched(to_pg=False, why="Redis answers again")
                    return None
            else:
                self.redis_failed = True
        not_before = self.last_slot - time.monotonic() if self.last_slot > -math.inf else None
        slots = self.pg.reserve(
            n,
            worker=self.worker_id,
            not_before=SECONDS_AGO if not_before is None else not_before,
            failed=self.redis_failed,
        )
        self.redis_failed = False
        if slots is None:  # another worker gave the number back to Redis
            self._switched(to_pg=False, why="another worker moved it back")
            return None
        if not slots.open:
            time.sleep(min(GRACE_POLL, max(0.0, slots.wait)))
            return None
        self.rate = slots.pace
        return Reservation([slots.first + i / slots.pace for i in range(n)], slots.pace)

    def _redis_answers(self) -> bool:
        try:
            return self.redis.ping()
        except redis.RedisError:
            return False

    def _switched(self, *, to_pg: bool, why: str) -> None:
        self.on_pg = to_pg
        now = time.monotonic()
        if to_pg:
            self.next_probe = now + PROBE_INTERVAL
            logger.warning("sender %s: pacing on PostgreSQL (%s)", self.pg.sender_id, why)
        else:
            self.next_mode_check = now + MODE_CHECK_INTERVAL
            self.last_slot = -math.inf
            logger.warning("sender %s: pacing back on Redis (%s)", self.pg.sender_id, why)

    # --- the other threads ----------------------------------------------------------------
    def serving(self, worker_id: str, *, now: float | None = None) -> int:
        if self.on_pg:
            return self.serving_count
        try:
            self.serving_count = self.redis.serving(worker_id, now=now)
        except redis.RedisError:
            self.redis_failed = True  # the pacer switches at its next chunk
        return self.serving_count

    def throttled(self, *, latency: float = 0.0, now: float | None = None) -> float:
        if not self.on_pg:
            try:
                self.rate = self.redis.throttled(latency=latency, now=now)
                return self.rate
            except redis.RedisError:
                self.redis_failed = True
        with self._lock:
            self._throttles.append(latency)
        # Slower at once locally; the row gets it at the flusher's next recover().
        self.rate = max(MIN_RATE, min(self.rate, self.target) - _trim(latency))
        return self.rate

    def recover(self, *, now: float | None = None) -> float | None:
        with self._lock:
            throttles, self._throttles = self._throttles, []
        if not self.on_pg:
            if throttles:
                return None  # counted while Redis was failing: the local trim stands
            try:
                return self.redis.recover(now=now)
            except redis.RedisError:
                self.redis_failed = True
                return None
        if not throttles and self.rate >= self.target:
            return None
        try:
            rate, recovered = self.pg.adapt(throttles, recover=True)
        except BaseException:
            with self._lock:
                self._throttles[:0] = throttles
            raise
        if rate is not None:
            self.rate = rate
        return recovered

"""Task locks (the dispatcher, each sender slice): in Redis, or PostgreSQL when Redis is away.

A Redis lock is a key with an expiry and a token, released by compare-and-delete. When Redis
cannot be reached the lock becomes a PostgreSQL session advisory lock held on a connection of
its own for as long as the task runs: it goes with that connection, so a dead worker never
leaves it behind. The two kinds do not see each other, so across a switch a slice may run
twice for a while; that costs nothing but an extra worker, because rows are claimed with
SKIP LOCKED and the rate is the shared bucket's (messaging/pacing.py), never the lock's.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import zlib
from dataclasses import dataclass

import psycopg
import redis
from django.db import connection

from messaging.redis_client import get_redis

logger = logging.getLogger(__name__)

# The first half of every advisory key of these locks (the drain uses a one-part key).
ADVISORY_NAMESPACE = 0x5741_434C
_UNLOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"
# Ours: extend it. Gone (Redis restarted empty, or we were stalled past the TTL and nobody
# took it): take it back. Someone else's: 0, the holder must stop.
_EXTEND = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


@dataclass
class HeldLock:
    key: str
    token: str = ""
    session: psycopg.Connection | None = None  # set when it is an advisory lock


def _advisory_id(key: str) -> int:
    return zlib.crc32(key.encode()) - 2**31  # a stable signed 32-bit number


def acquire(key: str, seconds: float) -> HeldLock | None:
    """Take the lock for up to `seconds` (Redis), or while the task runs (PostgreSQL)."""
    token = f"{socket.gethostname()}:{os.getpid()}:{time.monotonic_ns()}"
    try:
        if get_redis().set(key, token, nx=True, ex=math.ceil(seconds)):
            return HeldLock(key, token)
        return None
    except redis.RedisError as exc:
        logger.warning("lock %s: Redis unreachable (%s), using PostgreSQL", key, exc)
    if connection.vendor != "postgresql":
        return HeldLock(key)  # a single-process install: nothing to exclude
    session = psycopg.connect(**connection.get_connection_params(), autocommit=True)
    row = session.execute(
        "SELECT pg_try_advisory_lock(%s, %s)", [ADVISORY_NAMESPACE, _advisory_id(key)]
    ).fetchone()
    if row and row[0]:
        return HeldLock(key, session=session)
    session.close()
    return None


def release(lock: HeldLock) -> None:
    if lock.session is not None:
        lock.session.close()  # ends the session and its advisory lock
        return
    if not lock.token:
        return
    try:
        # Only the holder releases, so an expired lock taken over by another is left alone.
        get_redis().eval(_UNLOCK, 1, lock.key, lock.token)
    except redis.RedisError:
        logger.warning("lock %s: Redis unreachable; it expires by itself", lock.key)


def extend(lock: HeldLock, seconds: float) -> bool:
    """Keep a held lock for `seconds` more; False once it is someone else's (or gone).

    Locks are taken short and extended by a heartbeat, so a holder that dies frees its lock
    within seconds; a holder that finds it lost must stop, so a task never runs twice.
    """
    if lock.session is not None or not lock.token:
        return True  # an advisory lock lasts as long as its session
    try:
        return bool(get_redis().eval(_EXTEND, 1, lock.key, lock.token, math.ceil(seconds * 1000)))
    except redis.RedisError:
        return True  # nobody can take a Redis lock from us while Redis is away


def is_held(key: str) -> bool:
    """Whether someone holds the lock (asks PostgreSQL when Redis cannot answer)."""
    try:
        return bool(get_redis().exists(key))
    except redis.RedisError:
        pass
    if connection.vendor != "postgresql":
        return False
    args = [ADVISORY_NAMESPACE, _advisory_id(key)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", args)
        free = cursor.fetchone()[0]
        if free:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", args)
    return not free

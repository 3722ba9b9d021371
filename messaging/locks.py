"""Task locks (the dispatcher, each sender slice): in Redis, or PostgreSQL when Redis is away.

A Redis lock is a key with an expiry and a token, released by compare-and-delete. When Redis
cannot be reached the lock becomes a PostgreSQL session advisory lock held on a connection of
its own for as long as the task runs: it goes with that connection, so a dead worker never
leaves it behind. The two kinds are kept from overlapping across a switch:
- a holder whose Redis lock can no longer be extended (Redis lost) takes the advisory lock as
  well, or stops if someone already has it (a copy started meanwhile);
- a Redis lock is only kept if no advisory lock of that name is held (a copy started during the
  outage runs on), and is_held() asks both.
Without PostgreSQL (the SQLite demo) there is one process and nothing to exclude.
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
        if not get_redis().set(key, token, nx=True, ex=math.ceil(seconds)):
            return None
    except redis.RedisError as exc:
        logger.warning("lock %s: Redis unreachable (%s), using PostgreSQL", key, exc)
    else:
        lock = HeldLock(key, token)
        try:
            taken = _advisory_held(key)  # taken while Redis was away, and its holder runs on
        except BaseException:
            release(lock)
            raise
        if taken:
            release(lock)
            return None
        return lock
    if connection.vendor != "postgresql":
        return HeldLock(key)  # a single-process install: nothing to exclude
    session = _advisory_session(key)
    return HeldLock(key, session=session) if session is not None else None


def _advisory_session(key: str) -> psycopg.Connection | None:
    """A connection of its own holding the advisory lock `key`, or None if someone has it."""
    session = psycopg.connect(**connection.get_connection_params(), autocommit=True)
    try:
        row = session.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", [ADVISORY_NAMESPACE, _advisory_id(key)]
        ).fetchone()
    except BaseException:
        session.close()
        raise
    if row and row[0]:
        return session
    session.close()
    return None


def _advisory_held(key: str) -> bool:
    if connection.vendor != "postgresql":
        return False
    args = [ADVISORY_NAMESPACE, _advisory_id(key)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", args)
        free = cursor.fetchone()[0]
        if free:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", args)
    return not free


def release(lock: HeldLock) -> None:
    if lock.session is not None:
        lock.session.close()  # ends the session and its advisory lock
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
    if not lock.token:
        return True  # an advisory lock lasts as long as its session
    try:
        return bool(get_redis().eval(_EXTEND, 1, lock.key, lock.token, math.ceil(seconds * 1000)))
    except redis.RedisError:
        pass
    if lock.session is not None or connection.vendor != "postgresql":
        return True  # already held in PostgreSQL too (or nothing to exclude)
    # Redis is lost: hold the lock in PostgreSQL as well, so that a copy started by someone
    # who cannot see our Redis key is turned away; if one got there first, we stop.
    try:
        lock.session = _advisory_session(lock.key)
    except psycopg.Error:
        return True  # both away: nobody can start a copy either; try again next beat
    if lock.session is None:
        logger.warning("lock %s: taken in PostgreSQL while Redis was away", lock.key)
        return False
    return True


def is_held(key: str) -> bool:
    """Whether someone holds the lock, in Redis or (taken while Redis was away) PostgreSQL."""
    try:
        if get_redis().exists(key):
            return True
    except redis.RedisError:
        pass
    return _advisory_held(key)

"""The cluster keeper: restarts the control task chains within seconds, from inside the cluster.

django-q2's schedules fire at most once a minute and a task taken by a killed process is handed
out again only after `retry` (120 s). So every cluster worker process (at spawn: cluster start,
or the replacement of a killed or recycled worker) starts one daemon thread that, every
KEEPER_INTERVAL seconds, runs the registered checks: "is the dispatcher's lock held?" here,
"are webhook bodies waiting?" in the webhooks app. A check queues a fresh task when its chain is
broken; the task's own lock makes a duplicate return at once, so a slice or a drain never runs
twice. One process per interval does the checking (a Redis key); while Redis or PostgreSQL is
away the checks fail quietly and run again next interval, so a chain resumes as soon as they are
back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis
from django.db import close_old_connections, connection

from messaging.redis_client import get_redis

logger = logging.getLogger(__name__)

KEEPER_INTERVAL = 1.0
_ROUND_KEY = "wac:keeper:round"
_checks: list[Callable[[], None]] = []
_started = threading.Event()
_stops: list[threading.Event] = []


def register(check: Callable[[], None]) -> None:
    """Add a check the keeper runs every interval (from an AppConfig.ready)."""
    if check not in _checks:
        _checks.append(check)


def kick_once(key: str, seconds: float) -> bool:
    """Whether this caller may queue the task named by `key` now (one caller per `seconds`)."""
    try:
        return bool(get_redis().set(f"wac:kick:{key}", "1", nx=True, px=int(seconds * 1000)))
    except redis.RedisError:
        return True  # without Redis a duplicate task is harmless: its own lock stops it


def look_once() -> None:
    """One round of every check (the keeper thread's body; tests call it directly)."""
    try:
        mine = get_redis().set(_ROUND_KEY, "1", nx=True, px=int(KEEPER_INTERVAL * 900))
    except redis.RedisError:
        mine = True
    if not mine:
        return
    for check in _checks:
        try:
            close_old_connections()
            check()
        except Exception as exc:  # the database or Redis away: look again next interval
            logger.debug("keeper check %s failed: %s", check.__name__, exc)
            connection.close()


def _run(stop: threading.Event) -> None:
    look_once()  # at once: a restarted cluster picks its chains up without waiting
    while not stop.wait(KEEPER_INTERVAL):
        look_once()
    connection.close()


def start(**_signal_kwargs: object) -> threading.Event | None:
    """post_spawn receiver: one keeper thread per cluster worker process.

    Returns the event that stops the thread (None if this process already has one).
    """
    from django_q.conf import Conf

    if Conf.SYNC or _started.is_set():
        return None  # sync mode (tests) runs tasks inline and has no cluster to keep
    _started.set()
    stop = threading.Event()
    thread = threading.Thread(target=_run, args=(stop,), name="wac-keeper", daemon=True)
    thread.start()
    _stops.append(stop)
    return stop


def stop_all() -> None:
    """Stop this process's keeper thread (tests)."""
    while _stops:
        _stops.pop().set()
    _started.clear()

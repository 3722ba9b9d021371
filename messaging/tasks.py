"""django-q2 entry points. The cluster carries control tasks, never one task per message.

- `dispatch` runs for one slice (30 s): starts due campaigns, does housekeeping, and makes sure
  every sender number with a running campaign has its sender slices; then it queues its own
  successor. A lock keeps exactly one dispatcher alive.
- `run_sender_slice` sends for one number for one slice, then queues its successor while work
  remains. A lock per (number, slot) keeps a slice from running twice, even when a task
  outlives its timeout and django-q2 hands it out again.
Locks are in Redis, or PostgreSQL advisory locks while Redis is away (messaging/locks.py); a
lost database or Redis connection is waited out (messaging/transient.py), never fatal.
- Locks are short (LOCK_TTL) and extended every second by their holder, so a killed holder
  frees its lock within seconds; a holder that finds its lock taken stops (never two copies).
- The cluster keeper (messaging/keeper.py, a thread in every cluster worker process) restarts
  a broken dispatcher chain within seconds; the dispatcher restarts missing slices each second.
- `watchdog` (a Schedule every minute) restarts the dispatcher chain if it broke: a backstop.
Slices are short (SENDER_SLICE_SECONDS, 30 s) and Q_CLUSTER timeout (60 s) < retry (120 s), so
django-q2 never re-delivers a slice that is still running (docs/engine-notes.md §1).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django_q.conf import Conf
from django_q.tasks import async_task

from campaigns.models import SenderNumber
from messaging import keeper, locks
from messaging.maintenance import Supervisor, active_sender_ids
from messaging.sender import run_number
from messaging.transient import Backoff, GaveUp, retry_transient

logger = logging.getLogger(__name__)

DISPATCH_LOCK = "wac:lock:dispatch"
# A lock lives this long unless its holder extends it (every LOCK_HEARTBEAT seconds).
LOCK_TTL = 5.0
LOCK_HEARTBEAT = 1.0
# What one sender process comfortably sustains (docs/engine-notes.md §5: ~1,000/s is the edge).
RATE_PER_SLOT = 600


def _chain(func: str, *args: object, group: str) -> None:
    # In sync mode (tests) a queued task runs inline, so a chain would recurse forever.
    if not Conf.SYNC:
        async_task(func, *args, group=group)


def slots_for(rate_mps: int) -> int:
    return max(1, math.ceil(rate_mps * settings.SENDER_RATE_HEADROOM / RATE_PER_SLOT))


T = TypeVar("T")


def _patiently(step: Callable[[], T], what: str, seconds: float) -> T:
    """`step`, waiting out a lost database or Redis connection for up to `seconds`."""
    return retry_transient(step, backoff=Backoff(what), deadline=time.monotonic() + seconds)


def _slice_key(sender_id: int, slot: int) -> str:
    return f"wac:lock:slice:{sender_id}:{slot}"


class LockHeartbeat(threading.Thread):
    """Extends a held lock every LOCK_HEARTBEAT s; sets `lost` when someone else has it."""

    def __init__(self, lock: locks.HeldLock) -> None:
        super().__init__(name=f"heartbeat {lock.key}", daemon=True)
        self.lock = lock
        self.lost = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(LOCK_HEARTBEAT):
            if not locks.extend(self.lock, LOCK_TTL):
                logger.warning("lock %s was lost: stopping its task", self.lock.key)
                self.lost.set()
                return

    def __enter__(self) -> LockHeartbeat:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.done.set()
        self.join()


def run_sender_slice(sender_id: int, slot: int = 0) -> int:
    key = _slice_key(sender_id, slot)
    slice_seconds = settings.SENDER_SLICE_SECONDS
    lock = _patiently(lambda: locks.acquire(key, LOCK_TTL), key, slice_seconds)
    if lock is None:
        return 0
    try:
        worker = f"{socket.gethostname()}:{os.getpid()}:q{slot}"
        # The heartbeat also covers the drain after the slice (up to an HTTP read timeout).
        with LockHeartbeat(lock) as heartbeat:
            stats = run_number(
                sender_id,
                worker_id=worker,
                max_seconds=slice_seconds,
                until_idle=False,
                stop=heartbeat.lost,
            )
    finally:
        locks.release(lock)
    try:
        active = _patiently(active_sender_ids, "sender slice successor", slice_seconds)
    except GaveUp:
        active = []  # the dispatcher queues a slice again once the database is back
    if sender_id in active:
        _chain("messaging.tasks.run_sender_slice", sender_id, slot, group="sender")
    return stats.sent


def dispatch() -> None:
    slice_seconds = settings.SENDER_SLICE_SECONDS
    deadline = time.monotonic() + slice_seconds
    lock = _patiently(lambda: locks.acquire(DISPATCH_LOCK, LOCK_TTL), "dispatch", 20)
    if lock is None:
        return
    supervisor = Supervisor()
    backoff = Backoff("dispatcher")
    with LockHeartbeat(lock) as heartbeat:
        try:
            while time.monotonic() < deadline and not heartbeat.lost.is_set():
                step = lambda: kick_senders(supervisor.tick())  # noqa: E731
                try:
                    retry_transient(step, backoff=backoff, deadline=deadline)
                except GaveUp:
                    break  # the successor below starts over
                heartbeat.lost.wait(1)
        finally:
            locks.release(lock)
    if heartbeat.lost.is_set():
        return  # another dispatcher holds the lock: its chain goes on
    _chain("messaging.tasks.dispatch", group="dispatch")


def kick_senders(sender_ids: list[int]) -> int:
    """Queue a slice for every (active number, slot) that has none running."""
    if not sender_ids:
        return 0
    queued = 0
    rates = dict(SenderNumber.objects.filter(pk__in=sender_ids).values_list("pk", "rate_mps"))
    for sender_id, rate in rates.items():
        for slot in range(slots_for(rate)):
            if not locks.is_held(_slice_key(sender_id, slot)):
                _chain("messaging.tasks.run_sender_slice", sender_id, slot, group="sender")
                queued += 1
    return queued


def keep_dispatcher() -> None:
    """Keeper check: queue a dispatcher when none holds the lock (at most one per LOCK_TTL)."""
    if not locks.is_held(DISPATCH_LOCK) and keeper.kick_once("dispatch", LOCK_TTL):
        logger.warning("dispatcher not running: starting it")
        _chain("messaging.tasks.dispatch", group="dispatch")


def watchdog() -> None:
    """Every minute: restart the dispatcher chain if it is gone, check template winners."""
    from messaging.winner import check_winners

    try:
        check_winners()
    except Exception:  # the dispatcher check below must run whatever happens here
        logger.exception("template winner checks failed")
    if not _patiently(lambda: locks.is_held(DISPATCH_LOCK), "watchdog", 30):
        logger.warning("dispatcher not running: starting it")
        _chain("messaging.tasks.dispatch", group="dispatch")

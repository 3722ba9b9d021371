"""django-q2 entry points. The cluster carries control tasks, never one task per message.

- `dispatch` runs for one slice (30 s): starts due campaigns, does housekeeping, and makes sure
  every sender number with a running campaign has its sender slices; then it queues its own
  successor. A lock keeps exactly one dispatcher alive.
- `run_sender_slice` sends for one number for one slice, then queues its successor while work
  remains. A lock per (number, slot) keeps a slice from running twice, even when a task
  outlives its timeout and django-q2 hands it out again.
Locks are in Redis, or PostgreSQL advisory locks while Redis is away (messaging/locks.py); a
lost database or Redis connection is waited out (messaging/transient.py), never fatal.
- `watchdog` (a Schedule every minute) restarts the dispatcher chain if it broke.
Slices are short (SENDER_SLICE_SECONDS, 30 s) and Q_CLUSTER timeout (60 s) < retry (120 s), so
django-q2 never re-delivers a slice that is still running (engine-notes §1).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django_q.conf import Conf
from django_q.tasks import async_task

from campaigns.models import SenderNumber
from messaging import locks
from messaging.maintenance import Supervisor, active_sender_ids
from messaging.sender import run_number
from messaging.transient import Backoff, GaveUp, retry_transient

logger = logging.getLogger(__name__)

DISPATCH_LOCK = "wac:lock:dispatch"
# What one sender process comfortably sustains (engine-notes §5: ~1,000/s is the edge).
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


def run_sender_slice(sender_id: int, slot: int = 0) -> int:
    key = _slice_key(sender_id, slot)
    slice_seconds = settings.SENDER_SLICE_SECONDS
    # The lock outlives the slice by its longest possible drain (an HTTP read timeout).
    lock_seconds = slice_seconds + settings.WHATSAPP_READ_TIMEOUT + 10
    lock = _patiently(lambda: locks.acquire(key, lock_seconds), key, slice_seconds)
    if lock is None:
        return 0
    try:
        worker = f"{socket.gethostname()}:{os.getpid()}:q{slot}"
        stats = run_number(sender_id, worker_id=worker, max_seconds=slice_seconds, until_idle=False)
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
    lock = _patiently(lambda: locks.acquire(DISPATCH_LOCK, slice_seconds + 20), "dispatch", 20)
    if lock is None:
        return
    supervisor = Supervisor()
    backoff = Backoff("dispatcher")
    try:
        while time.monotonic() < deadline:
            step = lambda: kick_senders(supervisor.tick())  # noqa: E731
            try:
                retry_transient(step, backoff=backoff, deadline=deadline)
            except GaveUp:
                break  # the successor below starts over
            time.sleep(1)
    finally:
        locks.release(lock)
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


def watchdog() -> None:
    """Every minute: restart the dispatcher chain if it is gone."""
    if not _patiently(lambda: locks.is_held(DISPATCH_LOCK), "watchdog", 30):
        logger.warning("dispatcher not running: starting it")
        _chain("messaging.tasks.dispatch", group="dispatch")

"""django-q2 entry points. The cluster carries control tasks, never one task per message.

- `dispatch` runs for one slice (30 s): starts due campaigns, does housekeeping, and makes sure
  every sender number with a running campaign has its sender slices; then it queues its own
  successor. A Redis lock keeps exactly one dispatcher alive.
- `run_sender_slice` sends for one number for one slice, then queues its successor while work
  remains. A Redis lock per (number, slot) keeps a slice from running twice, even when a task
  outlives its timeout and django-q2 hands it out again.
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

from django.conf import settings
from django_q.conf import Conf
from django_q.tasks import async_task

from campaigns.models import SenderNumber
from messaging.maintenance import Supervisor, active_sender_ids
from messaging.redis_client import get_redis
from messaging.sender import run_number

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


def _lock(key: str, seconds: float) -> str | None:
    token = f"{socket.gethostname()}:{os.getpid()}:{time.monotonic_ns()}"
    if get_redis().set(key, token, nx=True, ex=math.ceil(seconds)):
        return token
    return None


def _unlock(key: str, token: str) -> None:
    # Only the holder releases (compare-and-delete), so an expired lock taken over by another
    # task is never removed by the old holder.
    script = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"
    get_redis().eval(script, 1, key, token)


def run_sender_slice(sender_id: int, slot: int = 0) -> int:
    key = f"wac:lock:slice:{sender_id}:{slot}"
    slice_seconds = settings.SENDER_SLICE_SECONDS
    # The lock outlives the slice by its longest possible drain (an HTTP read timeout).
    token = _lock(key, slice_seconds + settings.WHATSAPP_READ_TIMEOUT + 10)
    if token is None:
        return 0
    try:
        worker = f"{socket.gethostname()}:{os.getpid()}:q{slot}"
        stats = run_number(sender_id, worker_id=worker, max_seconds=slice_seconds, until_idle=False)
    finally:
        _unlock(key, token)
    if sender_id in active_sender_ids():
        _chain("messaging.tasks.run_sender_slice", sender_id, slot, group="sender")
    return stats.sent


def dispatch() -> None:
    token = _lock(DISPATCH_LOCK, settings.SENDER_SLICE_SECONDS + 20)
    if token is None:
        return
    deadline = time.monotonic() + settings.SENDER_SLICE_SECONDS
    supervisor = Supervisor()
    try:
        while time.monotonic() < deadline:
            kick_senders(supervisor.tick())
            time.sleep(1)
    finally:
        _unlock(DISPATCH_LOCK, token)
    _chain("messaging.tasks.dispatch", group="dispatch")


def kick_senders(sender_ids: list[int]) -> int:
    """Queue a slice for every (active number, slot) that has none running."""
    if not sender_ids:
        return 0
    queued = 0
    redis = get_redis()
    rates = dict(SenderNumber.objects.filter(pk__in=sender_ids).values_list("pk", "rate_mps"))
    for sender_id, rate in rates.items():
        for slot in range(slots_for(rate)):
            if not redis.exists(f"wac:lock:slice:{sender_id}:{slot}"):
                _chain("messaging.tasks.run_sender_slice", sender_id, slot, group="sender")
                queued += 1
    return queued


def watchdog() -> None:
    """Every minute: restart the dispatcher chain if it is gone."""
    if not get_redis().exists(DISPATCH_LOCK):
        logger.warning("dispatcher not running: starting it")
        _chain("messaging.tasks.dispatch", group="dispatch")

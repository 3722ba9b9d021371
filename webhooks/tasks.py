"""django-q2 entry points (dotted paths): thin wrappers around the drain and the auto-reply."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django_q.conf import Conf
from django_q.tasks import async_task

logger = logging.getLogger(__name__)

# Below Q_CLUSTER timeout (60 s): a longer backlog is handed to a chained successor task.
DRAIN_TASK_SECONDS = 25.0
# The keeper queues a drain at most this often while bodies wait.
DRAIN_KICK_SECONDS = 3.0
_last_kick = 0.0


def drain_webhooks() -> int:
    """Apply pending webhook bodies (kicked after stores; also the every-minute watchdog)."""
    from webhooks.drain import try_drain_exclusively

    applied = try_drain_exclusively(max_seconds=DRAIN_TASK_SECONDS)
    if applied is not None and _pending_exists_patiently():
        async_task("webhooks.tasks.drain_webhooks")
    return applied or 0


def _pending_exists_patiently() -> bool:
    """Whether a successor is needed; with the database away for long, the watchdog decides."""
    from messaging.transient import Backoff, GaveUp, retry_transient
    from webhooks.drain import pending_exists

    deadline = time.monotonic() + DRAIN_TASK_SECONDS
    try:
        return retry_transient(pending_exists, backoff=Backoff("webhook drain"), deadline=deadline)
    except GaveUp:
        return False


def keep_draining() -> None:
    """Keeper check (messaging/keeper.py): bodies waiting and no drain queued lately → drain.

    A drain already running holds its advisory lock, so the queued one returns at once; one
    that died with its process is replaced within seconds instead of after Q_CLUSTER retry.
    """
    from messaging import keeper
    from webhooks.drain import pending_exists

    if Conf.SYNC:
        return  # tests: a queued task would run inline, in the keeper's thread
    if pending_exists() and keeper.kick_once("drain", DRAIN_KICK_SECONDS):
        async_task("webhooks.tasks.drain_webhooks")


def kick_drain() -> None:
    """Ask the cluster to drain soon; at most once per WEBHOOK_KICK_SECONDS per process.

    Never raises: the body is already stored and the watchdog Schedule will apply it anyway.
    """
    global _last_kick
    interval = settings.WEBHOOK_KICK_SECONDS
    now = time.monotonic()
    if interval <= 0 or now - _last_kick < interval:
        return
    _last_kick = now
    try:
        async_task("webhooks.tasks.drain_webhooks")
    except Exception:
        logger.exception("could not enqueue the webhook drain; the watchdog will run it")


def auto_reply(inbound_id: int) -> str:
    """Answer one inbound message if a rule or the LLM hook has something to say."""
    from webhooks.autoreply import answer

    return answer(inbound_id=inbound_id)

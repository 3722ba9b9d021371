"""django-q2 entry points for event delivery: one runner chain, woken by writers.

`deliver_events` runs for one slice (EVENTS_SLICE_SECONDS) with a thread per due subscription
(at most EVENTS_MAX_PARALLEL), so a slow receiver delays only its own events; then it queues
its successor while events are pending. A Redis lock keeps one runner alive; a minute
schedule restarts the chain if it broke. Writers never wait for any of it.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor

import redis
from django.conf import settings
from django.db import close_old_connections, connection
from django_q.conf import Conf
from django_q.tasks import async_task

from messaging.integrations.events.delivery import deliver_batch, due_subscriptions, holding
from messaging.integrations.models import EventSubscription
from messaging.redis_client import get_redis

logger = logging.getLogger(__name__)

RUNNER_LOCK = "wac:lock:events"
# A batch due again within this long is retried by the same thread after a sleep, not left
# to the next look for due subscriptions: a receiver's passing failure then holds its later
# events for the first backoff step only (EVENTS_RETRY_BASE_SECONDS).
SHORT_RETRY_SECONDS = 1.0
KICK_KEY = "wac:events:kick"
# A subscription's thread that found nothing pending looks again this often for this long
# before it lets its lock and connection go: new events of a steady stream reach it within
# IDLE_POLL_SECONDS, without a reconnection and a look for due subscriptions per batch.
IDLE_POLL_SECONDS = 0.05
LINGER_SECONDS = 0.5


# A writer looks at Redis at most this often: a runner seen (or kicked) a moment ago is still
# there, and one that ends queues its successor while events are pending.
KICK_EVERY_SECONDS = 1.0
_last_kick = [-KICK_EVERY_SECONDS]


def kick_delivery() -> None:
    """After a commit that wrote events: make sure a runner is coming (cheap, throttled)."""
    if Conf.SYNC or not settings.REDIS_URL:
        return  # tests deliver explicitly; without Redis the minute schedule delivers
    now = time.monotonic()
    if now - _last_kick[0] < KICK_EVERY_SECONDS:
        return
    _last_kick[0] = now
    try:
        r = get_redis()
        if r.exists(RUNNER_LOCK) or not r.set(KICK_KEY, 1, nx=True, ex=2):
            return
    except redis.RedisError:
        return
    async_task("messaging.integrations.events.tasks.deliver_events", group="events")


def _deliver_one(subscription: EventSubscription, deadline: float) -> int:
    """One subscription's FIFO until it is empty for LINGER_SECONDS, fails for longer than a
    short retry, or the slice ends. Its lock and connection are held throughout: a steady
    stream of events costs no connection or lock per batch."""
    sent = 0
    try:
        with holding(subscription.pk) as held:
            idle_since: float | None = None
            while held and time.monotonic() < deadline:
                result = deliver_batch(subscription)
                if result.delivered:
                    sent += result.delivered
                    idle_since = None
                if result.fill_in is not None:
                    # What is left makes less than a batch: one look when it has filled or
                    # waited long enough (0: a full batch is ready now), not a poll.
                    time.sleep(min(result.fill_in, max(0.0, deadline - time.monotonic())))
                    continue
                if result.delivered:
                    if result.delivered < subscription.max_batch:
                        # The FIFO is drained (a short batch): look again after the poll
                        # interval instead of reading an empty batch now.
                        time.sleep(IDLE_POLL_SECONDS)
                    continue
                retry_in = result.retry_in
                if result.failed and retry_in is not None and retry_in <= SHORT_RETRY_SECONDS:
                    if time.monotonic() + retry_in >= deadline:
                        break
                    time.sleep(retry_in)
                    continue
                if result.failed or result.dead or result.waiting:
                    break  # the head's retry is later: the loop for due subscriptions has it
                now = time.monotonic()
                idle_since = idle_since or now
                if now - idle_since >= LINGER_SECONDS:
                    break
                time.sleep(IDLE_POLL_SECONDS)
    finally:
        connection.close()
    return sent


def run_delivery(*, seconds: float, until_idle: bool = True) -> int:
    """Deliver what is due for `seconds`; returns events delivered.

    Each due subscription gets its own thread until it has nothing due (or fails), so a
    slow receiver never holds up another subscription's events.
    """
    close_old_connections()
    deadline = time.monotonic() + seconds
    delivered = 0
    running: dict[int, Future[int]] = {}
    idle_since: float | None = None
    with ThreadPoolExecutor(settings.EVENTS_MAX_PARALLEL, thread_name_prefix="events") as pool:
        while time.monotonic() < deadline:
            for pk, future in list(running.items()):
                if future.done():
                    delivered += future.result()
                    del running[pk]
            due = [s for s in due_subscriptions() if s.pk not in running]
            for subscription in due[: settings.EVENTS_MAX_PARALLEL - len(running)]:
                running[subscription.pk] = pool.submit(_deliver_one, subscription, deadline)
            if running or due:
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif until_idle and time.monotonic() - idle_since > 1.0:
                break
            # Running threads look for their own events; a subscription that comes due
            # meanwhile waits a little longer for its thread (the look costs a query).
            time.sleep(0.5 if running else 0.2)
        for future in running.values():
            delivered += future.result()
    connection.close()
    return delivered


def deliver_events() -> int:
    r = get_redis()
    if not r.set(RUNNER_LOCK, 1, nx=True, ex=int(settings.EVENTS_SLICE_SECONDS) + 30):
        return 0
    try:
        delivered = run_delivery(seconds=settings.EVENTS_SLICE_SECONDS)
    finally:
        r.delete(RUNNER_LOCK)
    if due_subscriptions() and not Conf.SYNC:
        async_task("messaging.integrations.events.tasks.deliver_events", group="events")
    return delivered

"""One Redis connection pool per process, for pacing and locks (the cache has its own).

Commands fail fast when Redis is away: one quick retry (a pooled connection may have died
with a Redis restart; the retry reconnects), not redis-py's default of ten with backoff, which
made every call take over 3 s while Redis was down. Callers fall back to PostgreSQL or to
polling (docs/operations.md, "When Redis is down").
"""

from __future__ import annotations

import functools
import time

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

CONNECT_TIMEOUT = 1.0
# After a failed call, callers that can do without Redis skip it this long (a blackholed
# host would otherwise cost CONNECT_TIMEOUT on every call).
SKIP_AFTER_FAILURE = 1.0
_down_until = 0.0


def fast_retry() -> Retry:
    return Retry(NoBackoff(), 1)


@functools.cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=5,
        socket_connect_timeout=CONNECT_TIMEOUT,
        health_check_interval=30,
        retry=fast_retry(),
    )


def seems_down() -> bool:
    """Whether a call failed less than SKIP_AFTER_FAILURE ago (in this process)."""
    return time.monotonic() < _down_until


def failed() -> None:
    global _down_until
    _down_until = time.monotonic() + SKIP_AFTER_FAILURE

"""Requests per API key per minute, counted in Redis (shared by every web process)."""

from __future__ import annotations

import logging
import time

import redis

from messaging import redis_client
from messaging.integrations import lookup_cache
from messaging.integrations.api.errors import ApiError
from messaging.integrations.models import ApiKey

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60


def check_rate(api_key: ApiKey, *, now: float | None = None) -> int | None:
    """Raise 429 with Retry-After when this key used up its minute; open if Redis is down.

    Returns the lookup cache's version, read in the same round trip (None without Redis), so
    a request learns of a revoked key without a round trip of its own.
    """
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS)
    key = f"wac:api:rate:{api_key.pk}:{window}"
    if redis_client.seems_down():
        return None  # a call just failed: don't pay the connect timeout on every request
    try:
        # No MULTI/EXEC: the expiry only has to follow the count, not be atomic with it.
        pipe = redis_client.get_redis().pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, WINDOW_SECONDS * 2)
        pipe.get(lookup_cache.VERSION_KEY)
        count, _, version = pipe.execute()
    except redis.RedisError:
        # The limit protects the engine, not correctness: better served than refused.
        redis_client.failed()
        logger.warning("rate limit not checked: Redis unavailable", exc_info=True)
        return None
    if count > api_key.rate_limit_per_minute:
        retry_after = max(1, int((window + 1) * WINDOW_SECONDS - now) + 1)
        raise ApiError(
            429,
            "rate_limited",
            f"more than {api_key.rate_limit_per_minute} requests this minute for this key",
            headers={"Retry-After": str(retry_after)},
        )
    return int(version or 0)

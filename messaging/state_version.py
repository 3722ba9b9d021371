"""Counters in Redis bumped after every campaign state change and every opt-out.

Sender loops read them (one Redis MGET, not SQL) several times a second and re-read the
campaigns table, or re-check the numbers they hold against the suppression list, only when one
moved: a pause or an opt-out is seen within a fraction of a second without polling the database.
Without Redis, or while it cannot be reached, `current()` is None and callers poll the
database on a timer instead (the sender: every REFRESH_INTERVAL), so a pause is still seen
within about a second.
"""

from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

KEY = "wac:campaigns:version"
CAMPAIGNS = KEY
SUPPRESSIONS = "wac:suppressions:version"


def bump_on_commit(*keys: str) -> None:
    """Bump `keys` (default: CAMPAIGNS) once the change is committed (readers must see the new
    rows); several keys in one round trip."""
    if settings.REDIS_URL:
        transaction.on_commit(lambda: _bump(keys or (CAMPAIGNS,)))


def _bump(keys: tuple[str, ...]) -> None:
    from messaging.redis_client import get_redis

    try:
        if len(keys) == 1:
            get_redis().incr(keys[0])
        else:
            pipe = get_redis().pipeline(transaction=False)
            for key in keys:
                pipe.incr(key)
            pipe.execute()
    except redis.RedisError:
        # Readers also refresh on a slow timer, so a lost bump only delays them.
        logger.warning("could not bump %s", ", ".join(keys), exc_info=True)


def current(key: str = CAMPAIGNS) -> int | None:
    if not settings.REDIS_URL:
        return None
    from messaging import redis_client

    if redis_client.seems_down():
        return None
    try:
        return int(redis_client.get_redis().get(key) or 0)
    except redis.RedisError:
        redis_client.failed()
        return None


def both() -> tuple[int | None, int | None]:
    """(campaigns, suppressions) in one round trip: the sender's feeder reads this every tick."""
    if not settings.REDIS_URL:
        return None, None
    from messaging import redis_client

    if redis_client.seems_down():
        return None, None
    try:
        campaigns, suppressions = redis_client.get_redis().mget(CAMPAIGNS, SUPPRESSIONS)
    except redis.RedisError:
        redis_client.failed()
        return None, None
    return int(campaigns or 0), int(suppressions or 0)


def urgent_key(sender_id: int) -> str:
    """Bumped when rows that go before the ones in hand (a transactional send) are queued."""
    return f"wac:sender:{sender_id}:urgent"

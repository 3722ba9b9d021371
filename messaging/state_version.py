"""Counters in Redis bumped after every campaign state change and every opt-out.

Sender loops read them (one Redis MGET, not SQL) several times a second and re-read the
campaigns table, or re-check the numbers they hold against the suppression list, only when one
moved: a pause or an opt-out is seen within a fraction of a second without polling the database.
Without Redis, `current()` is None and callers poll on a timer instead.
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


def bump_on_commit(key: str = CAMPAIGNS) -> None:
    """Bump once the change is committed (readers must see the new rows)."""
    if settings.REDIS_URL:
        transaction.on_commit(lambda: _bump(key))


def _bump(key: str) -> None:
    from messaging.redis_client import get_redis

    try:
        get_redis().incr(key)
    except redis.RedisError:
        # Readers also refresh on a slow timer, so a lost bump only delays them.
        logger.warning("could not bump %s", key, exc_info=True)


def current(key: str = CAMPAIGNS) -> int | None:
    if not settings.REDIS_URL:
        return None
    from messaging.redis_client import get_redis

    try:
        return int(get_redis().get(key) or 0)
    except redis.RedisError:
        return None


def both() -> tuple[int | None, int | None]:
    """(campaigns, suppressions) in one round trip: the sender's feeder reads this every tick."""
    if not settings.REDIS_URL:
        return None, None
    from messaging.redis_client import get_redis

    try:
        campaigns, suppressions = get_redis().mget(CAMPAIGNS, SUPPRESSIONS)
    except redis.RedisError:
        return None, None
    return int(campaigns or 0), int(suppressions or 0)


def urgent_key(sender_id: int) -> str:
    """Bumped when rows that go before the ones in hand (a transactional send) are queued."""
    return f"wac:sender:{sender_id}:urgent"

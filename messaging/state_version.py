"""A counter in Redis bumped after every campaign state change.

Sender loops read it (a Redis GET, not SQL) several times a second and re-read the campaigns
table only when it moved, so a pause is seen within a fraction of a second without polling the
database. Without Redis, `current()` is None and callers poll the table instead.
"""

from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

KEY = "wac:campaigns:version"


def bump_on_commit() -> None:
    """Bump once the state change is committed (readers must see the new rows)."""
    if settings.REDIS_URL:
        transaction.on_commit(_bump)


def _bump() -> None:
    from messaging.redis_client import get_redis

    try:
        get_redis().incr(KEY)
    except redis.RedisError:
        # Readers also refresh on a slow timer, so a lost bump only delays them.
        logger.warning("could not bump %s", KEY, exc_info=True)


def current() -> int | None:
    if not settings.REDIS_URL:
        return None
    from messaging.redis_client import get_redis

    try:
        return int(get_redis().get(KEY) or 0)
    except redis.RedisError:
        return None

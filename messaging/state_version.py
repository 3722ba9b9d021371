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
    """Bumped when rows that go before the ones in hand (a transactional send) are queued;
    also the name of the channel its new value is published on (`wake_on_commit`)."""
    return f"wac:sender:{sender_id}:urgent"


# One round trip: the campaigns version (the dispatcher serves a stream's number only while it
# has rows), the number's urgent counter (what a feeder compares) and the message (what wakes
# a waiting sender loop at once).
_WAKE = """
redis.call('INCR', KEYS[1])
local v = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', KEYS[2], v)
return v
"""


def wake_on_commit(sender_id: int) -> None:
    """Rows that go before the ones in hand were queued for `sender_id` (a transactional
    send): once committed, bump the campaigns version and the number's urgent counter and
    publish the new value, so the sender loops of the number claim them now rather than at
    their feeder's next look."""
    if settings.REDIS_URL:
        transaction.on_commit(lambda: _wake(urgent_key(sender_id)))


def _wake(key: str) -> None:
    from messaging.redis_client import get_redis

    try:
        get_redis().eval(_WAKE, 2, CAMPAIGNS, key)
    except redis.RedisError:
        # The feeders also read the counter every tick and poll the table every second.
        logger.warning("could not wake the senders of %s", key, exc_info=True)

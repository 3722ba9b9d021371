"""The circuit breaker: a campaign whose recent outcomes fail too often for recipient reasons
is paused, with the figure and the top error codes in its pause reason (docs/policy.md).

`observe` is the one entry point. The sender's flusher (messaging.outcomes.record_answers) and
the status ladder (webhooks.statuses.ladder) both call it with the outcomes they just wrote.
Each campaign keeps a rolling window of its last POLICY_BREAKER_WINDOW outcomes, with a count
per code, in Redis: one Lua call per campaign per batch, never a scan of the queue. A success
is counted once, when the API accepts the message (or a webhook settles one in doubt). A
failed status for a message already counted turns its success into that failure, so each
message holds one place in the window. Without Redis, one process keeps the window in memory.

Only recipient-caused codes count, as failures or at all: throttling, outages, our payload and
template errors say nothing about the audience. Template and account errors pause on their own
(messaging.errors).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import transaction

from messaging.errors import Category, classify
from messaging.policy.actions import Effects

logger = logging.getLogger(__name__)

# What the window and the canary count as the audience's fault.
RECIPIENT_CATEGORIES = frozenset({Category.RECIPIENT, Category.MARKETING_LIMIT})
OK = "ok"
TOP_CODES = 3
WINDOW_TTL = 7 * 86_400
PAUSE_PREFIX = "Circuit breaker"


def recipient_caused(code: int | None) -> bool:
    """Whether an error code is the recipient's (or Meta's about the recipient) doing."""
    return code is not None and classify(code).category in RECIPIENT_CATEGORIES


@dataclass(frozen=True, slots=True)
class Sample:
    """One outcome: `code` None is a success. `replaces_success`: a failed status for a
    message whose acceptance was already counted."""

    campaign_id: int
    code: int | None = None
    replaces_success: bool = False


@dataclass(frozen=True)
class Window:
    total: int
    failed: int
    by_code: dict[int, int]

    @property
    def rate(self) -> float:
        return self.failed / self.total if self.total else 0.0


def failure_threshold(override: float | None) -> float:
    return settings.POLICY_MAX_FAILURE_RATE if override is None else override


def opt_out_threshold(override: float | None) -> float:
    return settings.POLICY_MAX_OPT_OUT_RATE if override is None else override


def top_codes(by_code: dict[int, int], limit: int = TOP_CODES) -> str:
    """'131026 ×80, 131049 ×30' (most frequent first)."""
    ranked = sorted(((n, code) for code, n in by_code.items() if n > 0), reverse=True)
    return ", ".join(f"{code} ×{n}" for n, code in ranked[:limit])


def percent(share: float) -> str:
    return f"{share * 100:.1f} %"


def pause_reason(window: Window, threshold: float) -> str:
    reason = (
        f"{PAUSE_PREFIX}: {percent(window.rate)} of the last {window.total} outcomes failed "
        f"for recipient reasons ({window.failed}), above {percent(threshold)}; "
        f"top codes {top_codes(window.by_code)}"
    )
    return reason[:255]


def observe(samples: Iterable[Sample], effects: Effects, *, moved: Iterable[int] = ()) -> None:
    """Feed outcomes just written; campaigns over their threshold go into `effects` to be
    paused (policy.actions.apply_effects). Campaigns in their canary (of the samples, or
    `moved`: campaigns whose rows a status moved) get their verdict looked at once the
    caller's transaction commits."""

    by_campaign: dict[int, list[str]] = {campaign_id: [] for campaign_id in moved}
    for sample in samples:
        if sample.code is None:
            entry = OK
        elif recipient_caused(sample.code):
            entry = f"!{sample.code}" if sample.replaces_success else str(sample.code)
        else:
            continue
        by_campaign.setdefault(sample.campaign_id, []).append(entry)
    if not by_campaign:
        return
    for campaign_id, (override, canary_state) in _settings_of(by_campaign).items():
        if canary_state == "running":
            _check_canary_on_commit(campaign_id)
        if not by_campaign[campaign_id]:
            continue
        try:
            window = windows().push(campaign_id, by_campaign[campaign_id])
        except redis.RedisError:
            logger.warning("campaign %s: breaker window not updated (Redis)", campaign_id)
            continue
        threshold = failure_threshold(override)
        sample_ok = window.total >= settings.POLICY_BREAKER_MIN_SAMPLE
        if sample_ok and window.rate > threshold:
            effects.pause_campaigns.setdefault(campaign_id, pause_reason(window, threshold))


# (max_failure_rate, canary_state) of each running campaign, or None for any other campaign, as
# read at one campaigns state version (messaging.state_version): every change of a campaign's
# status, canary state or thresholds bumps it (services, canary, the admin's save), so the
# flusher reads the campaigns table only after one, not once a flush. Without Redis (no
# version), every call reads.
_Settings = tuple[float | None, str]
_cache_lock = threading.Lock()
_cache: dict[int, _Settings | None] = {}
_cache_version: list[int | None] = [None]


def _settings_of(campaign_ids: Iterable[int]) -> dict[int, _Settings]:
    """The threshold override and canary state of those of `campaign_ids` that are running
    campaigns (not transactional streams)."""
    from campaigns.models import Campaign
    from messaging import state_version

    # The version before the rows: a change committed after this read moves it again.
    version = state_version.current()
    wanted = set(campaign_ids)
    with _cache_lock:
        if version is None or version != _cache_version[0]:
            _cache.clear()
            _cache_version[0] = version
        known = {pk: _cache[pk] for pk in wanted if pk in _cache}
    missing = wanted - set(known)
    if missing:
        read: dict[int, _Settings | None] = dict.fromkeys(missing)
        rows = Campaign.objects.filter(
            pk__in=missing, kind=Campaign.Kind.CAMPAIGN, status=Campaign.Status.RUNNING
        ).values_list("pk", "max_failure_rate", "canary_state")
        for pk, override, canary_state in rows:
            read[pk] = (override, canary_state)
        known.update(read)
        if version is not None:
            with _cache_lock:
                if _cache_version[0] == version:
                    _cache.update(read)
    return {pk: found for pk, found in sorted(known.items()) if found is not None}


def forget_settings() -> None:
    """Drop the cached campaign settings (tests: a database flush bumps no version)."""
    with _cache_lock:
        _cache.clear()
        _cache_version[0] = None


def _check_canary_on_commit(campaign_id: int) -> None:
    from messaging.policy import canary

    transaction.on_commit(lambda: canary.check_soon(campaign_id))


def reset(campaign_id: int) -> None:
    """Staff resumed the campaign: its old failures no longer count."""
    try:
        windows().reset(campaign_id)
    except redis.RedisError:
        logger.warning("campaign %s: breaker window not reset (Redis)", campaign_id)


def current(campaign_id: int) -> Window:
    """The window as it stands (the campaign page, tests)."""
    return windows().push(campaign_id, [])


# KEYS[1] = the outcomes list, KEYS[2] = counts per entry. ARGV = size, ttl, entries…
# An entry "!code" is a failure that takes the place of an earlier success.
_PUSH = """
local size = tonumber(ARGV[1])
for i = 3, #ARGV do
  local entry = ARGV[i]
  if string.sub(entry, 1, 1) == '!' then
    entry = string.sub(entry, 2)
    if redis.call('LREM', KEYS[1], 1, 'ok') == 1 then
      redis.call('HINCRBY', KEYS[2], 'ok', -1)
    end
  end
  redis.call('RPUSH', KEYS[1], entry)
  redis.call('HINCRBY', KEYS[2], entry, 1)
  if redis.call('LLEN', KEYS[1]) > size then
    local old = redis.call('LPOP', KEYS[1])
    if redis.call('HINCRBY', KEYS[2], old, -1) <= 0 then
      redis.call('HDEL', KEYS[2], old)
    end
  end
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return redis.call('HGETALL', KEYS[2])
"""


def _window(counts: dict[str, int]) -> Window:
    by_code = {int(k): n for k, n in counts.items() if k != OK and n > 0}
    failed = sum(by_code.values())
    return Window(failed + max(0, counts.get(OK, 0)), failed, by_code)


class RedisWindows:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.script = client.register_script(_PUSH)

    @staticmethod
    def keys(campaign_id: int) -> list[str]:
        return [f"wac:breaker:{campaign_id}", f"wac:breaker:{campaign_id}:counts"]

    def push(self, campaign_id: int, entries: list[str]) -> Window:
        reply = self.script(
            keys=self.keys(campaign_id),
            args=[settings.POLICY_BREAKER_WINDOW, WINDOW_TTL, *entries],
        )
        pairs = [p.decode() if isinstance(p, bytes) else str(p) for p in reply]
        return _window({pairs[i]: int(pairs[i + 1]) for i in range(0, len(pairs), 2)})

    def reset(self, campaign_id: int) -> None:
        self.client.delete(*self.keys(campaign_id))


class LocalWindows:
    """One process's windows (no Redis): the same rules, in memory."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lists: dict[int, deque[str]] = {}

    def push(self, campaign_id: int, entries: list[str]) -> Window:
        size = settings.POLICY_BREAKER_WINDOW
        with self.lock:
            items = self.lists.setdefault(campaign_id, deque())
            for entry in entries:
                if entry.startswith("!"):
                    entry = entry[1:]
                    if OK in items:
                        items.remove(OK)
                items.append(entry)
                while len(items) > size:
                    items.popleft()
            return _window(dict(Counter(items)))

    def reset(self, campaign_id: int) -> None:
        with self.lock:
            self.lists.pop(campaign_id, None)


_local = LocalWindows()


def windows() -> RedisWindows | LocalWindows:
    if settings.REDIS_URL:
        from messaging.redis_client import get_redis

        return RedisWindows(get_redis())
    return _local

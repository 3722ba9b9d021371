"""Raise, remind and resolve alerts from the current conditions; at most one notice per
condition per ALERT_REPEAT_MINUTES while it lasts, and one when it clears."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from messaging.integrations.alerts import conditions
from messaging.integrations.alerts.notify import notify
from messaging.integrations.models import Alert

logger = logging.getLogger(__name__)

EVALUATE_LOCK = "wac:alerts:evaluating"
BANNER_KEY = "wac:alerts:banner"


@transaction.atomic
def evaluate(now: datetime | None = None) -> dict[str, int]:
    """One pass; returns how many alerts were raised, reminded and resolved."""
    now = now or timezone.now()
    firing, broken = conditions.current(now)
    by_key = {f.key: f for f in firing}
    active = {a.key: a for a in Alert.objects.select_for_update().filter(active=True)}
    repeat = timedelta(minutes=settings.ALERT_REPEAT_MINUTES)
    counts = {"raised": 0, "reminded": 0, "resolved": 0}
    notices: list[tuple[str, str]] = []
    for key, f in by_key.items():
        alert = active.get(key)
        if alert is None:
            Alert.objects.update_or_create(
                key=key,
                defaults={
                    "condition": f.condition,
                    "message": f.message[:500],
                    "active": True,
                    "raised_at": now,
                    "resolved_at": None,
                    "notified_at": now,
                },
            )
            notices.append((f"ALERT: {f.message}"[:200], f.message))
            counts["raised"] += 1
        elif f.condition in conditions.EVENT_CONDITIONS:
            continue  # told once, when it happened
        elif alert.notified_at is None or now - alert.notified_at >= repeat:
            alert.notified_at, alert.message = now, f.message[:500]
            alert.save(update_fields=["notified_at", "message"])
            notices.append((f"STILL: {f.message}"[:200], f"{f.message}\nSince {alert.raised_at}."))
            counts["reminded"] += 1
    for key, alert in active.items():
        if key in by_key or alert.condition in broken:
            continue  # still true, or its check could not run this time: keep it
        alert.active, alert.resolved_at = False, now
        alert.save(update_fields=["active", "resolved_at"])
        counts["resolved"] += 1
        if alert.condition in conditions.EVENT_CONDITIONS:
            continue  # an event that aged out: nothing was "resolved"
        notices.append((f"RESOLVED: {alert.message}"[:200], f"Resolved at {now}: {alert.message}"))
    # Tell staff (and the banner) only once the state is committed, so a rollback never does.
    transaction.on_commit(lambda: _notify_all(notices))
    transaction.on_commit(_refresh_banner)
    return counts


def _notify_all(notices: list[tuple[str, str]]) -> None:
    for subject, text in notices:
        notify(subject, text)


def _refresh_banner() -> None:
    rows = Alert.objects.filter(active=True).order_by("raised_at").values("message", "raised_at")
    try:
        cache.set(BANNER_KEY, list(rows), timeout=None)
    except Exception:
        logger.warning("alert banner not cached", exc_info=True)


def banner() -> list[dict]:
    """The active alerts as of the last evaluation (message, raised_at).

    The cache is Redis: while it cannot be read, the banner comes from PostgreSQL: the alerts,
    and the degraded mode as it is now, before any evaluation has seen it. A cache that answers
    but has no banner yet (never evaluated) costs no query. django-redis, ignoring a lost
    connection, answers get() with the default and has_key() with None.
    """
    missing = object()
    try:
        cached = cache.get(BANNER_KEY, missing)
        if cached is not missing:
            return cached
        answered = cache.has_key(BANNER_KEY) is not None
    except Exception:
        answered = False
    if answered:
        return []
    try:
        rows: list[dict] = [
            dict(row)
            for row in Alert.objects.filter(active=True)
            .order_by("raised_at")
            .values("message", "raised_at")
        ]
        keys = set(Alert.objects.filter(active=True).values_list("key", flat=True))
        now = timezone.now()
        rows += [
            {"message": f.message, "raised_at": now}
            for f in conditions.pacing_degraded(now)
            if f.key not in keys
        ]
    except Exception:
        logger.warning("alert banner not read", exc_info=True)
        return []
    return rows


_evaluated_at = 0.0  # this process's last evaluation, while the cache cannot say


def evaluate_if_due() -> None:
    """From /health/: evaluate at most once a minute, so alerts fire even with no cluster."""
    global _evaluated_at
    try:
        added = cache.add(EVALUATE_LOCK, 1, timeout=60)
    except Exception:
        added = None
    if added is None:  # the cache (Redis) is away: once a minute per process instead
        if time.monotonic() - _evaluated_at < 60:
            return
        _evaluated_at = time.monotonic()
    elif not added:
        return
    try:
        evaluate()
    except Exception:
        logger.exception("alert evaluation failed")

"""What is wrong right now: each check returns the conditions that hold, keyed by subject.

Every check is a small query on an index (or a Redis ping); the evaluator runs them once a
minute and /health/ shows their result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Max
from django.utils import timezone

from campaigns.models import Campaign, SenderNumber, WhatsAppAccount
from messaging.models import PENDING_STATUSES, NumberChange, OutboundMessage, OutboundStatus
from messaging.services import is_manual_pause
from webhooks.models import RawEvent, StatusLog

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Firing:
    key: str
    condition: str
    message: str


def self_paused_campaigns(now: datetime) -> list[Firing]:
    paused = Campaign.objects.filter(status=Campaign.Status.PAUSED).values_list(
        "pk", "name", "pause_reason"
    )
    return [
        Firing(f"campaign_paused:{pk}", "campaign_paused", f"Campaign {name} paused: {reason}")
        for pk, name, reason in paused
        if not is_manual_pause(reason)
    ]


def token_failures(now: datetime) -> list[Firing]:
    failed = WhatsAppAccount.objects.filter(auth_failed_at__isnull=False)
    return [
        Firing(
            f"token_failed:{a.pk}",
            "token_failed",
            f"The access token of account {a} failed (error 190): its campaigns are paused",
        )
        for a in failed
    ]


def number_quality(now: datetime) -> list[Firing]:
    bad = SenderNumber.objects.filter(
        quality_rating__in=[SenderNumber.Quality.YELLOW, SenderNumber.Quality.RED]
    ) | SenderNumber.objects.exclude(status=SenderNumber.Status.CONNECTED)
    return [
        Firing(
            f"number_quality:{n.pk}",
            "number_quality",
            f"Number {n.display_number}: quality {n.quality_rating}, status {n.status}, "
            f"limit {n.messaging_tier}",
        )
        for n in bad.distinct()
    ]


def limit_changes(now: datetime) -> list[Firing]:
    """Each change of a messaging limit, quality rating or number status in the last
    ALERT_LIMIT_CHANGE_HOURS: told once (an event, not a state: no reminder, no resolved
    notice) and shown on the banner until it is that old."""
    since = now - timedelta(hours=settings.ALERT_LIMIT_CHANGE_HOURS)
    changes = (
        NumberChange.objects.filter(changed_at__gte=since)
        .select_related("portfolio", "sender")
        .order_by("changed_at", "pk")
    )
    return [
        Firing(f"limit_change:{c.pk}", "messaging_limit_changed", _said(c))
        for c in changes
        if not _number_quality_tells(c)
    ]


BAD_QUALITY = frozenset({SenderNumber.Quality.YELLOW, SenderNumber.Quality.RED})


def _number_quality_tells(change: NumberChange) -> bool:
    """A quality or status change into or out of a bad state is what `number_quality`
    raises or resolves: told there, not twice. A change between two bad states (YELLOW to
    RED, FLAGGED to RESTRICTED) and every limit change are told here."""
    if change.field == NumberChange.Field.QUALITY:
        return (change.old in BAD_QUALITY) != (change.new in BAD_QUALITY)
    if change.field == NumberChange.Field.STATUS:
        connected = SenderNumber.Status.CONNECTED
        return (change.old == connected) != (change.new == connected)
    return False


def _said(change: NumberChange) -> str:
    subject = (
        f"Portfolio {change.portfolio}"
        if change.portfolio is not None
        else f"Number {change.sender.display_number if change.sender else '?'}"
    )
    went = {"up": "went up", "down": "went down"}.get(change.direction, "changed")
    detail = f", {change.detail}" if change.detail else ""
    return (
        f"{subject}: {change.get_field_display()} {went}, {change.old or 'unset'} → "
        f"{change.new} (from {change.get_source_display()}{detail})"
    )


def stalled_campaigns(now: datetime) -> list[Firing]:
    """Running campaigns with due rows whose sent+failed did not move for N minutes."""
    minutes = settings.ALERT_STALLED_MINUTES
    firing = []
    running = Campaign.objects.filter(
        status=Campaign.Status.RUNNING, kind=Campaign.Kind.CAMPAIGN
    ).values_list("pk", "name", "sent", "failed")
    for pk, name, sent, failed in running:
        key = f"wac:alerts:progress:{pk}"
        seen = cache.get(key)
        progress = sent + failed
        if seen is None or seen[0] != progress:
            cache.set(key, (progress, now), timeout=7 * 86_400)
            continue
        if now - seen[1] < timedelta(minutes=minutes):
            continue
        due = OutboundMessage.objects.filter(
            campaign_id=pk, status__in=PENDING_STATUSES, next_attempt_at__lte=now
        ).exists()
        if due:
            firing.append(
                Firing(
                    f"stalled:{pk}",
                    "campaign_stalled",
                    f"Campaign {name} is running with messages due but sent none in "
                    f"{minutes} minutes",
                )
            )
    return firing


def webhook_backlog(now: datetime) -> list[Firing]:
    pending = RawEvent.objects.filter(applied_at__isnull=True).count()
    if pending <= settings.ALERT_WEBHOOK_BACKLOG:
        return []
    return [
        Firing(
            "webhook_backlog",
            "webhook_backlog",
            f"{pending} webhook bodies are waiting to be applied "
            f"(threshold {settings.ALERT_WEBHOOK_BACKLOG})",
        )
    ]


def webhook_silence(now: datetime) -> list[Firing]:
    """Messages accepted N+ minutes ago still wait for their first status, and none came."""
    minutes = settings.ALERT_WEBHOOK_SILENCE_MINUTES
    cutoff = now - timedelta(minutes=minutes)
    last = StatusLog.objects.order_by("-id").values_list("received_at", flat=True).first()
    if last is not None and last >= cutoff:
        return []
    running = Campaign.objects.filter(status=Campaign.Status.RUNNING).values_list("pk", flat=True)
    waiting = OutboundMessage.objects.filter(
        campaign_id__in=list(running),
        status=OutboundStatus.ACCEPTED,
        accepted_at__lt=cutoff,
        accepted_at__gte=cutoff - timedelta(hours=1),
    ).exists()
    if not waiting:
        return []
    return [
        Firing(
            "webhook_silent",
            "webhook_silent",
            f"No status webhook arrived in {minutes} minutes although messages were sent: "
            "check the app's webhook subscription (unknown sends can only be settled by them)",
        )
    ]


def webhooks_missing(now: datetime) -> list[Firing]:
    """Numbers whose in-doubt sends are held: no status webhook came for their later messages,
    so the `evidence` policy will not re-send them (messaging.evidence)."""
    from messaging.evidence import held_by_number

    held = held_by_number()
    if not held:
        return []
    names = dict(
        SenderNumber.objects.filter(pk__in=[h.sender_id for h in held]).values_list(
            "pk", "display_number"
        )
    )
    firing = []
    for h in held:
        last = h.statuses_seen_until
        seen = f"last status for a message sent {last:%Y-%m-%d %H:%M} UTC" if last else "none ever"
        firing.append(
            Firing(
                f"webhooks_missing:{h.sender_id}",
                "webhooks_missing",
                f"Webhooks not arriving for number {names.get(h.sender_id, h.sender_id)}: "
                f"{h.held} in-doubt messages held, not re-sent (statuses: {seen}). Check the app's "
                "webhook subscription and URL",
            )
        )
    return firing


def redis_down(now: datetime) -> list[Firing]:
    if not settings.REDIS_URL:
        return []
    from messaging.views import _check_redis

    if _check_redis(settings.REDIS_URL):
        return []
    return [
        Firing(
            "redis_down",
            "redis_down",
            "Redis does not answer: sending goes on in degraded mode (pacing, task locks and "
            "the messaging-limit ledger on PostgreSQL; pauses seen by polling)",
        )
    ]


def pacing_degraded(now: datetime) -> list[Firing]:
    """Numbers paced by PostgreSQL: Redis was lost, or is not yet trusted again."""
    from messaging.selectors import paced_by_postgres

    numbers = paced_by_postgres()
    if not numbers:
        return []
    since = min((n.since for n in numbers if n.since), default=None)
    names = ", ".join(n.display_number for n in numbers[:5])
    more = f" and {len(numbers) - 5} more" if len(numbers) > 5 else ""
    when = f" since {timezone.localtime(since):%H:%M:%S}" if since else ""
    return [
        Firing(
            "pacing_degraded",
            "pacing_degraded",
            f"Degraded mode{when}: {names}{more} paced by PostgreSQL (Redis unreachable); "
            "the rate cap holds, back to Redis by itself once it answers",
        )
    ]


def cluster_down(now: datetime) -> list[Firing]:
    """The django-q2 cluster runs the minute schedules; none ran for a few minutes."""
    from django_q.models import Schedule

    # Only schedules that run more often than the alert's horizon: a rare one (sync_numbers,
    # every 3 hours) has a next_run far ahead that would hide a dead cluster for hours.
    frequent = Schedule.objects.filter(
        repeats=-1,
        schedule_type=Schedule.MINUTES,
        minutes__lte=settings.ALERT_CLUSTER_MINUTES,
    )
    last = frequent.aggregate(last=Max("next_run"))["last"]
    # next_run moves forward each time a schedule runs; one far in the past means none ran.
    if last is None or last >= now - timedelta(minutes=settings.ALERT_CLUSTER_MINUTES):
        return []
    return [
        Firing(
            "cluster_down",
            "cluster_down",
            f"The task cluster ran no schedule for {settings.ALERT_CLUSTER_MINUTES}+ minutes: "
            "nothing is being sent or applied (start `manage.py qcluster`)",
        )
    ]


CHECKS: dict[str, Callable[[datetime], list[Firing]]] = {
    "campaign_paused": self_paused_campaigns,
    "token_failed": token_failures,
    "number_quality": number_quality,
    "messaging_limit_changed": limit_changes,
    "campaign_stalled": stalled_campaigns,
    "webhook_backlog": webhook_backlog,
    "webhook_silent": webhook_silence,
    "webhooks_missing": webhooks_missing,
    "redis_down": redis_down,
    "pacing_degraded": pacing_degraded,
    "cluster_down": cluster_down,
}


# Conditions that announce something that happened: told once when raised, never reminded,
# and dropped without a "resolved" notice when they age out.
EVENT_CONDITIONS = frozenset({"messaging_limit_changed"})


def current(now: datetime | None = None) -> tuple[list[Firing], set[str]]:
    """(what fires, which checks could not run) — a failing check never hides the others."""
    now = now or timezone.now()
    firing: list[Firing] = []
    broken: set[str] = set()
    for name, check in CHECKS.items():
        try:
            firing.extend(check(now))
        except Exception:
            logger.exception("alert check %s failed", name)
            broken.add(name)
    return firing, broken

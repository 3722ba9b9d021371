"""What /health/ and /metrics add for alerts, events and per-number sending; and who may read
the protected operational endpoints."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from campaigns.models import Campaign, SenderNumber
from messaging import minutes
from messaging.integrations.events.delivery import event_counts
from messaging.integrations.models import Alert
from messaging.models import OutboundMessage, OutboundStatus
from messaging.policy import budget
from webhooks.models import RawEvent


def staff_or_token(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A staff session, or `Authorization: Bearer <METRICS_TOKEN>`; else 403 (no detail)."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = getattr(request, "user", None)
        token = settings.METRICS_TOKEN
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if (user is not None and user.is_active and user.is_staff) or (
            token and hmac.compare_digest(given, token)
        ):
            return view(request, *args, **kwargs)
        return JsonResponse({"error": "staff session or metrics token required"}, status=403)

    return wrapped


def alert_report() -> dict[str, Any]:
    """For /health/: each condition ok or firing (with how many subjects), nothing secret."""
    return {name: ({"firing": n} if n else "ok") for name, n in alert_report_counts().items()}


def _gauge(
    lines: list[str],
    name: str,
    help_text: str,
    samples: Mapping[str, float],
    label: str,
) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} gauge")
    for key, value in samples.items():
        lines.append(f'{name}{{{label}="{key}"}} {value}')


def metric_lines() -> list[str]:
    lines: list[str] = []
    numbers = list(SenderNumber.objects.values_list("pk", "rate_mps", "learned_rate"))
    _gauge(
        lines,
        "wac_sender_rate_configured",
        "Configured msg/s.",
        {str(p): r for p, r, _ in numbers},
        "sender",
    )
    _gauge(
        lines,
        "wac_sender_rate_learned",
        "Rate learned after throttling (configured when never throttled).",
        {str(p): (learned if learned is not None else r) for p, r, learned in numbers},
        "sender",
    )
    _gauge(
        lines,
        "wac_sender_pacing_rate",
        "The pacing bucket's rate now.",
        _pacing_rates(numbers),
        "sender",
    )
    in_flight = dict(
        OutboundMessage.objects.filter(status=OutboundStatus.SENDING)
        .values_list("sender_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    _gauge(
        lines,
        "wac_sender_in_flight",
        "Rows claimed and being sent.",
        {str(p): in_flight.get(p, 0) for p, _, _ in numbers},
        "sender",
    )
    rates = minutes.send_rates(now=timezone.now())
    _gauge(
        lines,
        "wac_sender_send_rate",
        "Messages accepted per second over the last 60 s (all its campaigns and its stream).",
        {str(p): round(rates.get(p, 0.0), 2) for p, _, _ in numbers},
        "sender",
    )
    _budget_gauges(lines)
    oldest = RawEvent.objects.filter(applied_at__isnull=True).aggregate(at=Min("received_at"))["at"]
    lag = (timezone.now() - oldest).total_seconds() if oldest else 0.0
    lines += [
        "# HELP wac_webhook_lag_seconds Age of the oldest webhook body not applied yet.",
        "# TYPE wac_webhook_lag_seconds gauge",
        f"wac_webhook_lag_seconds {lag:.1f}",
    ]
    pending, dead = event_counts()
    _gauge(
        lines,
        "wac_outbound_events",
        "Outbound events pending or dead-lettered.",
        {"pending": pending, "dead": dead},
        "state",
    )
    _gauge(
        lines,
        "wac_alerts_active",
        "Active alerts by condition.",
        alert_report_counts(),
        "condition",
    )
    failures = dict(
        OutboundMessage.objects.filter(
            status=OutboundStatus.FAILED,
            campaign_id__in=Campaign.objects.exclude(status=Campaign.Status.COMPLETED).values("pk"),
        )
        .values_list("error_code")
        .annotate(n=Count("id"))
        .order_by()
    )
    _gauge(
        lines,
        "wac_failed_messages_by_code",
        "Failed rows of campaigns not completed, by error code.",
        {str(c) if c is not None else "unknown": n for c, n in failures.items()},
        "code",
    )
    return lines


def _budget_gauges(lines: list[str]) -> None:
    """Per portfolio (label "<id>", or "account_<id>" for an account without one, which is
    its own): its limit and what is left of it in the moving 24 h. A ledger with no limit
    enforced (TIER_UNLIMITED, never synced) has no sample."""
    ledgers = [ledger for ledger in budget.all_ledgers() if ledger.limit is not None]
    left = budget.left(ledgers, timezone.now())

    def label(key: str) -> str:
        kind, _, pk = key.partition(":")
        return pk if kind == "portfolio" else f"{kind}_{pk}"

    _gauge(
        lines,
        "wac_portfolio_budget_limit",
        "Messaging limit: unique recipients per moving 24 h.",
        {label(lg.key): lg.limit or 0 for lg in ledgers},
        "portfolio",
    )
    _gauge(
        lines,
        "wac_portfolio_budget_left",
        "Recipients the portfolio may still reach outside a service window now.",
        {label(key): value or 0 for key, value in left.items()},
        "portfolio",
    )


def alert_report_counts() -> dict[str, int]:
    from messaging.integrations.alerts.conditions import CHECKS

    counts = dict(
        Alert.objects.filter(active=True)
        .values_list("condition")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {name: counts.get(name, 0) for name in CHECKS}


def _pacing_rates(numbers: list[tuple[int, int, float | None]]) -> dict[str, float]:
    if not settings.REDIS_URL or not numbers:
        return {}
    import redis

    from messaging.redis_client import get_redis

    try:
        pipe = get_redis().pipeline()
        for pk, _, _ in numbers:
            pipe.hget(f"wac:pace:{pk}", "rate")
        rates = pipe.execute()
    except redis.RedisError:
        return {}
    return {str(pk): float(rate) for (pk, _, _), rate in zip(numbers, rates, strict=True) if rate}

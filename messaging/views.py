"""Operational endpoints: health (public, says nothing secret), memory and Prometheus metrics
(staff session or METRICS_TOKEN)."""

from __future__ import annotations

import logging
import resource

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from messaging.integrations.alerts.service import evaluate_if_due
from messaging.integrations.ops import alert_report, metric_lines, staff_or_token
from messaging.selectors import ops_metrics, paced_by_postgres

logger = logging.getLogger(__name__)

REDIS_TIMEOUT_SECONDS = 1.0


def _check_database() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        # The message may contain the connection string: log it, never return it.
        logger.exception("health: database check failed")
        return False
    return True


def _check_redis(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(
        url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
    )
    try:
        return bool(client.ping())
    except Exception:
        logger.warning("health: redis check failed", exc_info=True)
        return False
    finally:
        client.close()


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """200 "ok"; 200 "degraded" while Redis is away or numbers are still paced by PostgreSQL
    (everything works, slower: docs/operations.md, "When Redis is down"); 503 "error" when
    the database does not answer. Each part is named."""
    database = "ok" if _check_database() else "error"
    redis_url = getattr(settings, "REDIS_URL", "")
    redis_state = "disabled"
    if redis_url:
        redis_state = "ok" if _check_redis(redis_url) else "error"
    body: dict[str, object] = {"status": "error", "database": database, "redis": redis_state}
    if database == "ok":
        numbers = [n.sender_id for n in paced_by_postgres()]
        degraded = redis_state == "error" or bool(numbers)
        body["status"] = "degraded" if degraded else "ok"
        body["pacing"] = {
            "store": "postgresql" if numbers else ("redis" if redis_url else "local"),
            "numbers_on_postgresql": numbers,
        }
        evaluate_if_due()  # monitors polling /health/ keep alerts going without the cluster
        body["alerts"] = alert_report()
    return JsonResponse(body, status=200 if database == "ok" else 503)


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])  # "VmRSS:   123456 kB"
    except (OSError, ValueError, IndexError):
        return None
    return None


@never_cache
@require_GET
@staff_or_token
def memory(request: HttpRequest) -> JsonResponse:
    """This process's resident memory now and at its peak, in MB."""
    rss = _proc_status_kib("VmRSS")
    peak = _proc_status_kib("VmHWM")
    if peak is None:
        # ru_maxrss is KiB on Linux (bytes on macOS, where /proc is missing anyway).
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return JsonResponse(
        {
            "rss_mb": round(rss / 1024, 1) if rss is not None else None,
            "peak_rss_mb": round(peak / 1024, 1),
        }
    )


def _metric(
    lines: list[str], name: str, help_text: str, samples: dict[str, int], label: str
) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} gauge")
    for key, value in samples.items():
        lines.append(f'{name}{{{label}="{key}"}} {value}')


@never_cache
@require_GET
@staff_or_token
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text exposition; aggregates only (no names, numbers or tokens)."""
    data = ops_metrics()
    lines: list[str] = []
    _metric(lines, "wac_campaigns", "Campaigns by status.", data.campaigns_by_status, "status")
    _metric(
        lines,
        "wac_queue_messages",
        "Queue rows not final yet, by status (final states: wac_campaign_messages).",
        data.queue_by_status,
        "status",
    )
    # Gauges, not counters: requeue_failed takes rows back out of `failed`.
    _metric(
        lines,
        "wac_campaign_messages",
        "Sums of the campaign counters (total, sent, delivered, read, failed).",
        data.counters,
        "counter",
    )
    if data.raw_events_pending is not None:
        lines.append(
            "# HELP wac_webhook_raw_events_pending Webhook bodies stored, not yet applied."
        )
        lines.append("# TYPE wac_webhook_raw_events_pending gauge")
        lines.append(f"wac_webhook_raw_events_pending {data.raw_events_pending}")
    lines.extend(metric_lines())
    return HttpResponse(
        "\n".join(lines) + "\n", content_type="text/plain; version=0.0.4; charset=utf-8"
    )

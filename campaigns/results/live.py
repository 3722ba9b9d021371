"""The live campaign snapshot: what the campaign page shows and its JSON endpoint returns
every 2 s. A constant number of indexed queries whatever the campaign's size (docs/results.md):
the campaign row, rows waiting beyond the queue, rows at `sent`, and replies.

Every text is formatted here, once: the page renders `display` and the browser script only
copies new values into the same elements.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from django.core.cache import cache
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.plan_block import campaign_plan
from campaigns.results import figures as fig
from messaging.models import OutboundMessage, OutboundStatus
from messaging.policy.canary import WAIT_CANARY
from messaging.policy.plan import timed_waits
from messaging.selectors import WaitingReason, waiting_reasons

# The current rate is measured over about this long, from samples of the `sent` counter that
# each snapshot leaves in the cache (whoever is watching), so it costs no query at all.
RATE_WINDOW_SECONDS = 10.0
_SAMPLES_KEPT_SECONDS = 60.0
FINAL = (Campaign.Status.COMPLETED, Campaign.Status.CANCELLED)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _clock(at: datetime) -> str:
    return timezone.localtime(at).strftime("%b %d, %H:%M")


def current_rate(campaign: Campaign, *, now: float | None = None) -> float | None:
    """Accepted messages per second over the last ~10 s, or None until two samples exist."""
    now = time.time() if now is None else now
    key = f"campaign-rate:{campaign.pk}"
    samples: list[tuple[float, int]] = [
        s for s in (cache.get(key) or []) if s[0] >= now - _SAMPLES_KEPT_SECONDS
    ]
    samples.append((now, campaign.sent))
    cache.set(key, samples[-64:], timeout=int(_SAMPLES_KEPT_SECONDS * 2))
    older = [s for s in samples if s[0] <= now - 2.0]  # at least 2 s apart
    if not older:
        return None
    start = min(older, key=lambda s: abs(s[0] - (now - RATE_WINDOW_SECONDS)))
    return max(0, campaign.sent - start[1]) / (now - start[0])


def _waiting_json(reason: WaitingReason) -> dict[str, Any]:
    text = f"{reason.count:,} {reason.reason}"
    if reason.until is not None and reason.key == WAIT_CANARY:
        text += f" (its verdict by {_clock(reason.until)} at the latest)"
    elif reason.until is not None:
        text += f" (next at {_clock(reason.until)})"
    return {
        "key": reason.key,
        "count": reason.count,
        "text": text,
        "until": reason.until.isoformat() if reason.until else None,
    }


def _at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def planned_eta(plan: dict[str, Any] | None) -> str:
    """The ETA of a running campaign: the plan's (messaging.policy.plan), which plays what is
    left forward under every rule: the window, the frequency cap, the portfolio budget's
    waves and the canary's verdict."""
    if plan is None:
        return "working out the plan…"
    eta = _at(plan["eta"])
    if eta is None:
        return "–"
    now = timezone.now()
    text = f"about {_duration(max((eta - now).total_seconds(), 0))} (by {_clock(eta)}"
    waves = [(_at(w["starts"]), w["count"]) for w in plan["waves"]]
    later = [(at, n) for at, n in waves[1:] if at is not None and at > now]
    if later:
        text += f"; {len(waves)} waves, the next ({later[0][1]:,}) from {_clock(later[0][0])}"
    b = plan["budget"]
    if b["limit"] is not None and b["charged"] > (b["left"] or 0):
        text += (
            f"; the messaging limit leaves {b['left']:,} of {b['limit']:,} now, "
            f"for {b['charged']:,} new recipients"
        )
    return text + f"; planned at {plan['rate_per_second']:g} msg/s)"


def snapshot(campaign: Campaign, *, now: float | None = None) -> dict[str, Any]:
    """Everything the live page shows, as JSON-ready data (`display` holds the texts). The ETA
    and the canary's verdict come from the campaign's last plan (never made here: the plan
    block makes it); what waits, and how many, is counted now."""
    plan = campaign_plan(campaign, make=False) if campaign.status not in FINAL else None
    verdict = (plan or {}).get("canary_timeline") or {}
    reasons = timed_waits(waiting_reasons(campaign), _at(verdict.get("verdict_by")))
    sent_pending = OutboundMessage.objects.filter(
        campaign_id=campaign.pk, status=OutboundStatus.SENT
    ).count()
    counts = fig.PageCounts(
        replied=fig.page_replies(campaign),
        waiting=sum(r.count for r in reasons),
        sent_pending=sent_pending,
    )
    f = fig.figures(campaign, counts)
    steps = fig.funnel(f)
    sender = campaign.sender
    rate = current_rate(campaign, now=now)
    target = float(sender.rate_mps)
    running = campaign.status == Campaign.Status.RUNNING

    eta = "–"
    if running and f.waiting:
        eta = planned_eta(plan)
    elif campaign.status in FINAL and campaign.finished_at:
        eta = f"finished {_clock(campaign.finished_at)}"

    status = campaign.get_status_display()
    if campaign.pause_reason and campaign.status == Campaign.Status.PAUSED:
        status += f": {campaign.pause_reason}"
    display: dict[str, str] = {
        "status": status,
        "progress": f"{f.done:,} of {f.queued:,} finished ({f.fraction:.0%})",
        "rate": (
            ("–" if rate is None else f"{rate:.1f} msg/s")
            + f" now, target {target:.0f} msg/s"
            + (f", learned {sender.learned_rate:.1f} msg/s" if sender.learned_rate else "")
        ),
        "eta": eta,
        "waiting": f"{f.waiting:,}",
        "failed": f"{f.failed:,} ({_percent(f.failure_rate)})",
        "expired": "–" if f.expired is None else f"{f.expired:,}",
        "delivered_rate": _percent(f.delivered_rate),
        "read_rate": _percent(f.read_rate),
        "reply_rate": _percent(f.reply_rate),
    }
    for step in steps:
        display[f"funnel.{step.key}"] = f"{step.count:,}"
        display[f"funnel.{step.key}.of_previous"] = _percent(step.of_previous)
        display[f"funnel.{step.key}.drop"] = (
            "" if not step.drop else f"−{step.drop:,}" if step.drop > 0 else f"+{-step.drop:,}"
        )
    return {
        "id": campaign.pk,
        "status": campaign.status,
        "final": campaign.status in FINAL,
        "progress": {"done": f.done, "queued": f.queued},
        "rate": rate,
        "waiting": [_waiting_json(r) for r in reasons],
        "funnel": [
            {"key": s.key, "count": s.count, "of_previous": s.of_previous, "drop": s.drop}
            for s in steps
        ],
        "display": display,
    }

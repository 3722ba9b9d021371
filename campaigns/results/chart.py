"""The campaign's time chart: accepted, delivered, read, replies and failures per bucket (a
minute, or wider for long campaigns so a chart never has more than MAX_BUCKETS points), drawn
as a server-side SVG. No chart library: five polylines and two axes are a few lines of
markup, and nothing has to be vendored, loaded or kept current in the browser.

The counts come from the per-minute table the engine and the webhook appliers move
(messaging.minutes), so drawing costs O(minutes), not O(messages) (docs/results.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.cache import cache
from django.utils import timezone
from django.utils.html import escape

from campaigns.models import Campaign
from messaging import minutes

SERIES = ("accepted", "delivered", "read", "replies", "failures")
COLOURS = {
    "accepted": "#417690",
    "delivered": "#2e8b57",
    "read": "#6a5acd",
    "replies": "#d2691e",
    "failures": "#ba2121",
}
MAX_BUCKETS = 240
# While a campaign runs the chart is recomputed at most this often, whoever watches.
CACHE_SECONDS = 30


@dataclass(frozen=True)
class Chart:
    start: datetime
    bucket_seconds: int
    series: dict[str, list[int]]  # one count per bucket, same length for every series

    @property
    def buckets(self) -> int:
        return len(self.series["accepted"])


def _bucket_seconds(span: float) -> int:
    for size in (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400):
        if span / size <= MAX_BUCKETS:
            return size
    return math.ceil(span / MAX_BUCKETS)


def chart(campaign: Campaign, *, now: datetime | None = None) -> Chart | None:
    """The counts per bucket over the campaign's life; None before it started.

    Read from the per-minute counts (messaging.minutes): one index range of at most one row
    per minute of the campaign's life, whatever its number of messages."""
    if campaign.started_at is None:
        return None
    start = campaign.started_at.replace(second=0, microsecond=0)
    end = campaign.finished_at or now or timezone.now()
    size = _bucket_seconds(max((end - start).total_seconds(), 60))
    n = max(1, math.ceil((end - start).total_seconds() / size))
    series = {name: [0] * n for name in SERIES}
    names = dict(
        zip(minutes.KINDS, ("accepted", "delivered", "read", "failures", "replies"), strict=True)
    )
    for minute, counts in minutes.per_minute(campaign.pk):
        bucket = int((minute - start).total_seconds() // size)
        if 0 <= bucket < n:
            for kind, count in zip(minutes.KINDS, counts, strict=True):
                series[names[kind]][bucket] += count
    return Chart(start=start, bucket_seconds=size, series=series)


def cached_svg(campaign: Campaign) -> str:
    """The SVG, recomputed at most every CACHE_SECONDS while running, once when final."""
    final = campaign.status in (Campaign.Status.COMPLETED, Campaign.Status.CANCELLED)
    key = f"campaign-chart:{campaign.pk}:{campaign.status}:{campaign.updated_at.timestamp()}"
    svg = cache.get(key)
    if svg is None:
        svg = render_svg(chart(campaign))
        cache.set(key, svg, timeout=24 * 3600 if final else CACHE_SECONDS)
    return svg


def render_svg(data: Chart | None, *, width: int = 960, height: int = 260) -> str:
    left, right, top, bottom = 48, 12, 12, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="wac-chart" viewBox="0 0 {width} '
        f'{height}" role="img" aria-label="Messages per time bucket" '
        'font-family="sans-serif" font-size="11">'
    )
    if data is None:
        return head + f'<text x="{left}" y="{height // 2}">Not started yet.</text></svg>'
    peak = max((max(values) for values in data.series.values()), default=0) or 1
    step = plot_w / max(data.buckets - 1, 1)
    parts = [head]
    for i in range(5):  # horizontal grid with counts
        y = top + plot_h * i / 4
        value = round(peak * (4 - i) / 4)
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#ccc" stroke-width="0.5"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>'
        )
    labels = min(data.buckets, 6)
    for i in range(labels):
        bucket = round(i * (data.buckets - 1) / max(labels - 1, 1))
        at = timezone.localtime(data.start + timedelta(seconds=bucket * data.bucket_seconds))
        anchor = "start" if i == 0 else "end" if i == labels - 1 else "middle"
        parts.append(
            f'<text x="{left + bucket * step:.1f}" y="{height - bottom + 16}" '
            f'text-anchor="{anchor}">{at:%H:%M}</text>'
        )
    for name in SERIES:
        values = data.series[name]
        points = " ".join(
            f"{left + i * step:.1f},{top + plot_h * (1 - v / peak):.1f}"
            for i, v in enumerate(values)
        )
        parts.append(
            f'<polyline fill="none" stroke="{COLOURS[name]}" stroke-width="1.5" '
            f'points="{points}"><title>{escape(name)}</title></polyline>'
        )
    unit = f"per {data.bucket_seconds // 60} min" if data.bucket_seconds >= 60 else "per bucket"
    x = left
    for name in SERIES:
        parts.append(
            f'<rect x="{x}" y="{height - 14}" width="10" height="10" fill="{COLOURS[name]}"/>'
            f'<text x="{x + 14}" y="{height - 5}">{name}</text>'
        )
        x += 90
    parts.append(f'<text x="{width - right}" y="{height - 5}" text-anchor="end">{unit}</text>')
    parts.append("</svg>")
    return "".join(parts)


def totals(data: Chart) -> dict[str, int]:
    return {name: sum(values) for name, values in data.series.items()}

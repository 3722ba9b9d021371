"""What a campaign's settings may be: one check that every entry point (the admin wizard,
`create_campaign`, the import service itself) applies the same way."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import connection
from django.utils import timezone

from campaigns.models import Campaign

NAME_MAX = Campaign._meta.get_field("name").max_length or 200
PRIORITY_MIN, PRIORITY_MAX = connection.ops.integer_field_range("SmallIntegerField")
MAX_TEMPLATE_WEIGHT = 1000  # shares are relative: more than this only risks overflow


def start_time_problem(start_at: datetime) -> str | None:
    """Why `start_at` cannot schedule a campaign, or None (a past time would send at once)."""
    if timezone.is_naive(start_at):
        start_at = timezone.make_aware(start_at)
    if start_at <= timezone.now():
        return "the start time is in the past"
    return None


def campaign_settings_problem(
    *,
    name: str,
    priority: int = 0,
    start_at: datetime | None = None,
    weights: Iterable[int] = (),
) -> str | None:
    """The first thing wrong with these campaign settings, or None."""
    name = (name or "").strip()
    if not name:
        return "the campaign needs a name"
    if len(name) > NAME_MAX:
        return f"the name is {len(name)} characters long; at most {NAME_MAX}"
    if not isinstance(priority, int) or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        return f"the priority {priority} is outside {PRIORITY_MIN}..{PRIORITY_MAX}"
    for weight in weights:
        if not isinstance(weight, int) or not 1 <= weight <= MAX_TEMPLATE_WEIGHT:
            return f"a template weight of {weight}: use a whole number 1..{MAX_TEMPLATE_WEIGHT}"
    if start_at is not None:
        return start_time_problem(start_at)
    return None

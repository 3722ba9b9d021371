"""A campaign's send-policy settings as staff type them (wizard, create_campaign), read by the
policy's own parsers, so the form, the command and the engine read them the same way; and the
one list of the Campaign fields that hold those settings (and, next to it, the template
winner's), which a copy of a campaign carries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from campaigns.models import Campaign
from messaging.policy.frequency import CapError, parse_cap
from messaging.policy.windows import WindowError, parse_window

# Every Campaign field that holds a send-policy setting staff chose. `duplicate_campaign` copies
# exactly these, so a setting added here is carried by every copy. A new policy field goes
# here or in POLICY_STATE_FIELDS (tests/policy/test_policy_fields.py fails otherwise).
POLICY_FIELDS: tuple[str, ...] = (
    "valid_until",
    "window_start",
    "window_end",
    "window_days",
    "frequency_cap",
    "canary_percent",
    "canary_rate",
    "max_failure_rate",
    "max_opt_out_rate",
)
# What the engine wrote while a campaign ran its policy: never copied, a copy starts afresh.
POLICY_STATE_FIELDS: tuple[str, ...] = (
    "canary_state",
    "canary_size",
    "canary_done_at",
    "canary_report",
)
# The sibling list for the automatic template winner (messaging.winner): the settings staff
# chose are copied, and the test's progress and verdict are not (a copy runs its own test).
WINNER_FIELDS: tuple[str, ...] = (
    "winner_measure",
    "winner_test_share",
    "winner_min_delivered",
    "winner_wait_minutes",
)
WINNER_STATE_FIELDS: tuple[str, ...] = (
    "winner_waiting_since",
    "winner_decided_at",
    "winner_decision",
)
# What a campaign made from another carries: a duplicate, and a follow-up to one of its
# cohorts (as defaults).
COPIED_FIELDS: tuple[str, ...] = POLICY_FIELDS + WINNER_FIELDS


def copied_settings(source: Campaign, *, now: datetime | None = None) -> dict[str, Any]:
    """The settings a campaign made from `source` starts with: all of COPIED_FIELDS, except a
    valid_until already past, which would expire the new rows before the first send (the new
    campaign then has none, and staff set a new one)."""
    fields = {name: getattr(source, name) for name in COPIED_FIELDS}
    if fields["valid_until"] is not None and fields["valid_until"] <= (now or timezone.now()):
        fields["valid_until"] = None
    return fields


class PolicyFieldError(ValueError):
    """Settings that cannot be used: `errors` maps each (valid_until, window, days, cap) to
    what is wrong with it; `field` is the first of them."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        self.field = next(iter(errors))
        super().__init__(errors[self.field])


def campaign_policy(
    *,
    valid_until: datetime | None = None,
    window: str = "",
    days: str = "",
    cap: str = "",
    now: datetime | None = None,
) -> dict[str, Any]:
    """The Campaign fields for these settings (only those given). Raises PolicyFieldError
    naming every setting that is wrong."""
    fields: dict[str, Any] = {}
    errors: dict[str, str] = {}
    if valid_until is not None:
        if timezone.is_naive(valid_until):
            valid_until = timezone.make_aware(valid_until)
        if valid_until <= (now or timezone.now()):
            errors["valid_until"] = "already past"
        fields["valid_until"] = valid_until
    try:
        parsed = parse_window(window or "", days or "")
    except WindowError as exc:
        parsed = None
        errors["days" if str(exc).startswith("days") else "window"] = str(exc)
    else:
        if (days or "").strip() and parsed is None:
            errors["days"] = "the days need a window (e.g. 09:00-20:00)"
    if parsed is not None:
        fields.update(window_start=parsed.start, window_end=parsed.end)
        fields["window_days"] = (days or "").strip().lower()
    try:
        parse_cap(cap or "")
    except CapError as exc:
        errors["cap"] = str(exc)
    if (cap or "").strip():
        fields["frequency_cap"] = cap.strip().lower()
    if errors:
        raise PolicyFieldError(errors)
    return fields

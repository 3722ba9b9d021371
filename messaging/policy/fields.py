"""A campaign's send-policy settings as staff type them (wizard, create_campaign), read by the
policy's own parsers, so the form, the command and the engine read them the same way."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from messaging.policy.frequency import CapError, parse_cap
from messaging.policy.windows import WindowError, parse_window


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

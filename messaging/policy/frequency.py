"""The frequency cap: at most N marketing messages per contact per D days, across campaigns.

Counted from the queue itself (messages accepted in the last D days, plus those in flight), so
it needs no counter of its own and holds across every campaign and worker. The check runs in
the claim's transaction under a per-number advisory lock, so two workers claiming the same
person for two campaigns at once take turns and the second sees the first's message.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F, Q

from messaging.models import OutboundMessage, OutboundStatus, to_numbers
from messaging.sql_paths import AnyOf

_CAP = re.compile(r"^\s*(\d{1,4})\s*/\s*(\d{1,4})\s*d\s*$")
# Namespace of the advisory locks taken per number (the second key is the number's hash).
LOCK_NAMESPACE = 7_110_431


class CapError(ValueError):
    """A cap that cannot be read."""


@dataclass(frozen=True)
class Cap:
    messages: int
    days: int

    def __str__(self) -> str:
        return f"{self.messages}/{self.days}d"

    @property
    def period(self) -> timedelta:
        return timedelta(days=self.days)


def parse_cap(text: str) -> Cap | None:
    """ "2/7d" = two per seven days; "" or "off" = no cap."""
    text = (text or "").strip().lower()
    if text in ("", "off", "none"):
        return None
    match = _CAP.match(text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise CapError(f"frequency cap {text!r}: expected messages/days, e.g. 2/7d, or off")
    return Cap(int(match.group(1)), int(match.group(2)))


def campaign_cap(override: str) -> Cap | None:
    """The campaign's own cap, else POLICY_MARKETING_CAP."""
    return parse_cap(override if override.strip() else settings.POLICY_MARKETING_CAP)


def _exempt() -> list[str]:
    return [c.upper() for c in settings.POLICY_CAP_EXEMPT_CATEGORIES]


def is_capped_category(category: str) -> bool:
    return category.upper() not in _exempt()


def lock_numbers(phones: list[str]) -> None:
    """Serialise cap checks per number until the transaction ends (PostgreSQL)."""
    if connection.vendor != "postgresql" or not phones:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(p)) FROM "
            "(SELECT p FROM unnest(%s::text[]) AS p ORDER BY p) AS sorted",
            [LOCK_NAMESPACE, sorted(set(phones))],
        )


def recent_sends(
    phones: list[str], *, since: datetime, now: datetime, excluding: list[int]
) -> dict[str, list[datetime]]:
    """Per number, when each capped (marketing) message of the period went, oldest first;
    a message in flight counts as going now."""
    rows = (
        OutboundMessage.objects.filter(to_numbers(phones))
        .exclude(AnyOf(F("pk"), excluding))
        .exclude(template__category__in=_exempt())
        .filter(
            Q(accepted_at__gte=since)
            | Q(status__in=(OutboundStatus.SENDING, OutboundStatus.UNKNOWN))
        )
        .values_list("phone", "accepted_at")
    )
    sends: dict[str, list[datetime]] = defaultdict(list)
    for phone, accepted_at in rows:
        sends[phone].append(accepted_at or now)
    for times in sends.values():
        times.sort()
    return sends


def free_at(cap: Cap, times: list[datetime], now: datetime) -> datetime:
    """When one more message fits: now, or when enough of `times` leave the period."""
    if len(times) < cap.messages:
        return now
    # The oldest sends that must age out for one more to fit.
    return times[len(times) - cap.messages] + cap.period

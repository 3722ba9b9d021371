"""Sending windows in the recipient's local time (quiet hours), and the recipient's zone.

A window is a daily time range (09:00-20:00; 00:00-00:00 is all day; 20:00-08:00 runs over
midnight) on allowed weekdays. A number that maps to several zones (most of the US, Russia,
Brazil…) may be messaged only when the window is open in all of them: the strictest reading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from messaging.policy.phone_zones import zone_names

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class WindowError(ValueError):
    """A window or weekday list that cannot be read; the message says what was expected."""


@dataclass(frozen=True)
class Window:
    start: time
    end: time
    days: frozenset[int] = frozenset(range(7))  # 0 = Monday

    def __str__(self) -> str:
        days = ",".join(DAY_NAMES[d] for d in sorted(self.days))
        return f"{self.start:%H:%M}-{self.end:%H:%M} {days}"

    def _intervals(self, zone: ZoneInfo, around: date) -> list[tuple[datetime, datetime]]:
        spans = []
        for offset in range(-1, 9):
            day = around + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opens = datetime.combine(day, self.start, zone)
            closes = datetime.combine(day, self.end, zone)
            if closes <= opens:
                closes += timedelta(days=1)  # over midnight, or all day (start == end)
            spans.append((opens, closes))
        return spans

    def next_open(self, zone: ZoneInfo, at: datetime) -> datetime:
        """`at` if the window is open in `zone` then, else the moment it next opens."""
        return self.span(zone, at)[0]

    def span(self, zone: ZoneInfo, at: datetime) -> tuple[datetime, datetime]:
        """The open period of `zone` that contains `at` or comes next: (`at` or when it
        opens, when it closes)."""
        local = at.astimezone(zone)
        for opens, closes in self._intervals(zone, local.date()):
            if closes > local:
                start = at if opens <= local else opens.astimezone(UTC)
                return start, closes.astimezone(UTC)
        raise AssertionError("a window with allowed days opens within 8 days")


def parse_window(text: str, days: str = "") -> Window | None:
    """ "09:00-20:00" and "mon-fri" (or "mon,wed,sat"); empty text = no window."""
    if not text.strip():
        return None
    match = _RANGE.match(text)
    if not match:
        raise WindowError(f"window {text!r}: expected HH:MM-HH:MM, e.g. 09:00-20:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise WindowError(f"window {text!r}: hours 00-23, minutes 00-59")
    return Window(time(h1, m1), time(h2, m2), parse_days(days))


def parse_days(text: str) -> frozenset[int]:
    """ "mon-fri", "sat,sun", "mon-wed,fri"; empty = every day."""
    text = text.strip().lower()
    if not text:
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        ends = [p.strip()[:3] for p in part.split("-")]
        if len(ends) > 2 or any(e not in DAY_NAMES for e in ends):
            raise WindowError(f"days {text!r}: expected e.g. mon-fri or sat,sun")
        first, last = DAY_NAMES.index(ends[0]), DAY_NAMES.index(ends[-1])
        span = range(first, last + 1) if first <= last else [*range(first, 7), *range(last + 1)]
        days.update(span)
    return frozenset(days)


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@lru_cache(maxsize=65536)
def zones_for_phone(phone: str) -> tuple[ZoneInfo, ...]:
    """The zones libphonenumber gives the number (several for big countries), else UTC."""
    return _zones_named(zone_names(phone))


@lru_cache(maxsize=4096)
def _zones_named(names: tuple[str, ...]) -> tuple[ZoneInfo, ...]:
    zones = tuple(z for n in names if (z := _zone(n)) is not None)
    return zones or (ZoneInfo("UTC"),)


def zones_for(phone: str, attribute: str | None = None) -> tuple[ZoneInfo, ...]:
    """The contact's `timezone` attribute (an IANA name) when it has a valid one."""
    if attribute:
        zone = _zone(attribute.strip())
        if zone is not None:
            return (zone,)
    return zones_for_phone(phone)


def opening(window: Window, zones: tuple[ZoneInfo, ...], at: datetime) -> datetime:
    """The first moment from `at` when the window is open in every zone."""
    moment = at
    for _ in range(16):
        later = max(window.next_open(zone, moment) for zone in zones)
        if later == moment:
            return moment
        moment = later
    # No common opening (zones half a day apart): the strictest single zone decides.
    return max(window.next_open(zone, at) for zone in zones)


def open_span(
    window: Window, zones: tuple[ZoneInfo, ...], at: datetime
) -> tuple[datetime, datetime]:
    """`opening(window, zones, at)` and the moment after it when the window first closes in
    one of the zones: every moment in between passes the gate (the plan uses it to judge
    many rows of one zone without asking again)."""
    opens = opening(window, zones, at)
    closes = [c for o, c in (window.span(zone, opens) for zone in zones) if o == opens]
    return opens, min(closes, default=opens + timedelta(seconds=1))

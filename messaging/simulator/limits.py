"""Meta's limits beyond messages per second, as the simulator models them.

The options are listed in docs/benchmarks.md ("Simulator").

- The portfolio messaging limit: unique recipients per business portfolio over a moving window
  (24 h at Meta). A recipient already counted in the window costs nothing more; a new one over
  the limit is refused.
- The per-user marketing cap: at most N marketing templates to one user over a moving window;
  the next one fails with 131049.
- Marketing templates to US numbers (+1) are never delivered: 131049.

Each counter only moves for a send that is accepted, so a refused send never uses up a limit.
"""

from __future__ import annotations

from collections import OrderedDict, deque

import phonenumbers

ECOSYSTEM_CODE = 131049


class UniqueRecipients:
    """Recipients counted per portfolio over a moving window, each at its latest send."""

    __slots__ = ("last_seen",)

    def __init__(self) -> None:
        self.last_seen: dict[str, OrderedDict[str, float]] = {}

    def _window(self, portfolio: str, now: float, window_s: float) -> OrderedDict[str, float]:
        seen = self.last_seen.setdefault(portfolio, OrderedDict())
        horizon = now - window_s
        while seen:
            recipient, at = next(iter(seen.items()))
            if at > horizon:
                break
            del seen[recipient]
        return seen

    def admits(self, portfolio: str, to: str, *, now: float, limit: int, window_s: float) -> bool:
        seen = self._window(portfolio, now, window_s)
        return to in seen or len(seen) < limit

    def record(self, portfolio: str, to: str, *, now: float) -> None:
        seen = self.last_seen.setdefault(portfolio, OrderedDict())
        seen[to] = now
        seen.move_to_end(to)

    def counts(self, *, now: float, window_s: float) -> dict[str, int]:
        return {p: len(self._window(p, now, window_s)) for p in list(self.last_seen)}


class MarketingCap:
    """Marketing templates accepted per recipient over a moving window."""

    __slots__ = ("times",)

    def __init__(self) -> None:
        self.times: dict[str, deque[float]] = {}

    def admits(self, to: str, *, now: float, cap: int, window_s: float) -> bool:
        times = self.times.get(to)
        if not times:
            return True
        horizon = now - window_s
        while times and times[0] <= horizon:
            times.popleft()
        return len(times) < cap

    def record(self, to: str, *, now: float) -> None:
        self.times.setdefault(to, deque()).append(now)


def is_us_number(to: str) -> bool:
    """A +1 number of the US region (Canada and the other +1 countries still get marketing)."""
    digits = to.lstrip("+")
    if not digits.startswith("1"):
        return False
    try:
        number = phonenumbers.parse("+" + digits)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.region_code_for_number(number) == "US"

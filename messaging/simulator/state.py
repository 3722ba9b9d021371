"""In-memory counters and the per-number throughput window; everything `/_sim/stats` reports."""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter, deque
from typing import Any

from messaging.simulator.limits import MarketingCap, UniqueRecipients

# The duplicates list in stats is capped so a runaway sender cannot make /_sim/stats huge.
MAX_LISTED_DUPLICATES = 1000


class ThroughputWindow:
    """Accepted-message timestamps of one number over the last second (a sliding window).

    A send is admitted only while fewer than `cap` messages were accepted in the last 1 s,
    so no 1-second window ever holds more than `cap`: a sender pacing at 0.9 x cap is never
    throttled, one at 1.2 x cap is throttled for the excess.
    """

    __slots__ = ("max_in_window", "times")

    def __init__(self) -> None:
        self.times: deque[float] = deque()
        self.max_in_window = 0

    def admits(self, now: float, cap: int) -> bool:
        times = self.times
        horizon = now - 1.0
        while times and times[0] <= horizon:
            times.popleft()
        return len(times) < cap

    def record(self, now: float) -> None:
        self.times.append(now)
        if len(self.times) > self.max_in_window:
            self.max_in_window = len(self.times)


class SimState:
    """Counters since start or the last reset."""

    def __init__(self) -> None:
        # A per-process prefix keeps wamids unique across simulator restarts too.
        self._wamid_prefix = "wamid.SIM" + os.urandom(6).hex().upper() + "_"
        self._wamid_seq = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        self.started_at = time.monotonic()
        self.cpu_at_reset = time.process_time()
        self.requests = 0
        self.send_requests = 0
        self.accepted = 0
        self.errors: Counter[str] = Counter()
        self.resets_before = 0
        self.resets_after_accept = 0
        self.accepted_by_number: Counter[str] = Counter()
        self.windows: dict[str, ThroughputWindow] = {}
        self.portfolio_recipients = UniqueRecipients()
        self.marketing_sent = MarketingCap()
        # Accepted sends failed by webhook because a limit refused them (limit_errors_via).
        self.limit_failures: Counter[str] = Counter()
        self.accepted_by_callback: Counter[str] = Counter()
        self.accepted_by_to: Counter[str] = Counter()
        # Every valid send that reached the simulator (accepted or not), e.g. to count retries.
        self.arrivals_by_callback: Counter[str] = Counter()
        self.webhook_statuses_queued = 0
        self.webhook_statuses_delivered = 0
        self.webhook_statuses_dropped = 0
        self.webhook_posts = 0
        self.webhook_post_failures = 0
        self.webhook_post_retries = 0
        self.webhook_events_delivered = 0

    def new_wamid(self) -> str:
        return f"{self._wamid_prefix}{next(self._wamid_seq):010d}"

    def window(self, phone_number_id: str) -> ThroughputWindow:
        window = self.windows.get(phone_number_id)
        if window is None:
            window = self.windows[phone_number_id] = ThroughputWindow()
        return window

    def record_accept(
        self, *, phone_number_id: str, to: str, callback: str | None, now: float
    ) -> None:
        self.accepted += 1
        self.accepted_by_number[phone_number_id] += 1
        self.window(phone_number_id).record(now)
        self.accepted_by_to[to] += 1
        if callback is not None:
            self.accepted_by_callback[callback] += 1

    def record_error(self, code: int | str) -> None:
        self.errors[str(code)] += 1

    def stats(self, *, full: bool = False) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started_at
        data: dict[str, Any] = {
            "elapsed_s": round(elapsed, 3),
            "cpu_s": round(time.process_time() - self.cpu_at_reset, 3),
            "requests": self.requests,
            "send_requests": self.send_requests,
            "accepted": self.accepted,
            "errors": dict(self.errors),
            "resets_before": self.resets_before,
            "resets_after_accept": self.resets_after_accept,
            "limit_failures": dict(self.limit_failures),
            "accepted_by_number": dict(self.accepted_by_number),
            "max_accepted_1s_by_number": {
                number: window.max_in_window for number, window in self.windows.items()
            },
            "callbacks": _arrival_summary(self.accepted_by_callback),
            "recipients": _arrival_summary(self.accepted_by_to),
            "callback_arrivals": _arrival_summary(self.arrivals_by_callback),
            "webhooks": {
                "statuses_queued": self.webhook_statuses_queued,
                "statuses_delivered": self.webhook_statuses_delivered,
                "statuses_dropped": self.webhook_statuses_dropped,
                "posts": self.webhook_posts,
                "post_failures": self.webhook_post_failures,
                "post_retries": self.webhook_post_retries,
                "events_delivered": self.webhook_events_delivered,
            },
        }
        if full:
            data["accepted_by_callback"] = dict(self.accepted_by_callback)
            data["accepted_by_to"] = dict(self.accepted_by_to)
            data["arrivals_by_callback"] = dict(self.arrivals_by_callback)
        return data


def _arrival_summary(counts: Counter[str]) -> dict[str, Any]:
    more = {key: n for key, n in counts.items() if n > 1}
    listed = dict(itertools.islice(more.items(), MAX_LISTED_DUPLICATES))
    return {
        "distinct": len(counts),
        "exactly_once": len(counts) - len(more),
        "more_than_once": len(more),
        "duplicates": listed,
        "duplicates_truncated": len(more) > len(listed),
    }

"""The sender's claimed rows in hand: one FIFO per priority, the highest served first.

A worker holds a few seconds of a campaign's rows (its claim horizon). A row of a higher
priority (a transactional send) claimed after them must not wait behind them: it goes into
its own lane and the pacer's next slot takes it, whichever path claimed it (the feeder's
regular top-up or the wake-up on a transactional send). Within a lane the order is the
claim's (interleaved campaigns, retries at the back, a slot given back at the front).

Shared by the pacer, the feeder and the wake-up thread: every method holds one lock (an
uncontended lock costs far less than a send; iterating deques another thread mutates would
raise).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator

from messaging.queue import ClaimedMessage


class Lanes:
    """A deque-like queue of ClaimedMessage ordered by `priority`, FIFO within one."""

    def __init__(self) -> None:
        self._lanes: dict[int, deque[ClaimedMessage]] = {}
        self._order: list[int] = []  # priorities, highest first
        self._size = 0
        self._lock = threading.Lock()

    def _lane(self, priority: int) -> deque[ClaimedMessage]:
        lane = self._lanes.get(priority)
        if lane is None:
            lane = self._lanes[priority] = deque()
            self._order = sorted(self._lanes, reverse=True)
        return lane

    def append(self, message: ClaimedMessage) -> None:
        with self._lock:
            self._lane(message.priority).append(message)
            self._size += 1

    def appendleft(self, message: ClaimedMessage) -> None:
        """Back at the front of its lane (a slot it could not use)."""
        with self._lock:
            self._lane(message.priority).appendleft(message)
            self._size += 1

    def extend(self, messages: Iterable[ClaimedMessage]) -> None:
        messages = list(messages)  # a generator over these lanes must not run under the lock
        with self._lock:
            for message in messages:
                self._lane(message.priority).append(message)
                self._size += 1

    def popleft(self) -> ClaimedMessage:
        """The oldest row of the highest priority held; IndexError when empty."""
        with self._lock:
            for priority in self._order:
                lane = self._lanes[priority]
                if lane:
                    self._size -= 1
                    return lane.popleft()
        raise IndexError("pop from empty Lanes")

    def take_all(self) -> list[ClaimedMessage]:
        """Every row held, in the order they would go, leaving the lanes empty: one step under
        the lock, so a row another thread pops or adds meanwhile is neither lost nor taken
        twice (a `while lanes: popleft()` loop can find the last row gone between the two)."""
        with self._lock:
            taken = [m for p in self._order for m in self._lanes[p]]
            self._lanes.clear()
            self._order = []
            self._size = 0
        return taken

    def clear(self) -> None:
        with self._lock:
            self._lanes.clear()
            self._order = []
            self._size = 0

    def snapshot(self) -> list[ClaimedMessage]:
        """The rows held, in the order they would go."""
        with self._lock:
            return [m for p in self._order for m in self._lanes[p]]

    def __iter__(self) -> Iterator[ClaimedMessage]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

"""Lost connections to PostgreSQL or Redis are transient: back off, reconnect, go on.

Every long-running loop (the sender's threads, the supervisors, the webhook drain, the cluster
tasks) runs its steps through `retry_transient`, so a database restart or a Redis outage costs
a few seconds of work, never a dead process. One outage is logged once when it starts and once
when it ends, however many retries it takes. Anything else (a bug, bad data) still raises.

What a failed step held is the caller's business: rows it had claimed stay claimed and are
recovered by their lease, exactly as when a worker dies.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
import redis
from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Django wraps psycopg's errors in its own; raw psycopg ones appear where a cursor is used
# directly. Statement-level trouble (a deadlock, a lock or statement timeout) is an
# OperationalError too, and retrying it is right as well.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    redis.ConnectionError,
    redis.TimeoutError,
)

BASE_DELAY = 0.2
MAX_DELAY = 5.0
JITTER = 0.5  # ± this fraction, so workers that lost the same server don't return in step


class GaveUp(Exception):
    """A transient error outlasted the caller's patience (stop set or deadline passed)."""


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS)


class Backoff:
    """Retry state of one loop: capped exponential delay with jitter, one log line per outage."""

    def __init__(self, what: str, *, base: float = BASE_DELAY, cap: float = MAX_DELAY) -> None:
        self.what = what
        self.base = base
        self.cap = cap
        self.failures = 0
        self.since = 0.0

    def failed(self, exc: BaseException) -> float:
        """Record one failure; returns how long to wait before the next try."""
        if self.failures == 0:
            self.since = time.monotonic()
            logger.warning("%s: lost a connection (%s); retrying", self.what, _describe(exc))
        self.failures += 1
        _reset_database_connection()
        delay = min(self.cap, self.base * 2 ** (self.failures - 1))
        return delay * random.uniform(1 - JITTER, 1 + JITTER)

    def succeeded(self) -> None:
        if self.failures:
            logger.warning(
                "%s: connection back after %.1f s (%d retries)",
                self.what,
                time.monotonic() - self.since,
                self.failures,
            )
        self.failures = 0


def retry_transient(
    step: Callable[[], T],
    *,
    backoff: Backoff,
    stop: threading.Event | Callable[[], bool] | None = None,
    deadline: float | None = None,
) -> T:
    """Run `step` until it finishes without a transient error and return its result.

    Raises GaveUp (from the last error) once `stop` is set (an Event, or a callable that
    returns true) or the monotonic `deadline` passes while the connection is still lost; any
    other exception passes through at once.
    """
    while True:
        try:
            result = step()
        except TRANSIENT_ERRORS as exc:
            delay = backoff.failed(exc)
            if deadline is not None:
                delay = min(delay, deadline - time.monotonic())
            if isinstance(stop, threading.Event):
                stopped = stop.wait(max(delay, 0))
            else:
                _sleep(delay)
                stopped = stop is not None and stop()
            if stopped or (deadline is not None and time.monotonic() >= deadline):
                raise GaveUp(f"{backoff.what}: {_describe(exc)}") from exc
            continue
        backoff.succeeded()
        return result


def _sleep(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)


def _reset_database_connection() -> None:
    """Drop this thread's broken connection; Django opens a fresh one on the next query."""
    try:
        connection.close()
    except Exception:  # closing a connection the server already dropped may itself fail
        logger.debug("closing a lost database connection failed", exc_info=True)


def _describe(exc: BaseException) -> str:
    # The first line only: psycopg's messages may go on with the server's detail lines.
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200]

"""Pytest fixtures for the simulator: `pytest_plugins = ["messaging.simulator.pytest_fixtures"]`.

`simulator` is one simulator process per test session (no latency, fixed seed). Tests that
change its settings should use `fresh_simulator`, which puts counters and settings back to the
start values before the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from messaging.simulator.harness import SimulatorHandle, start_simulator

SESSION_OPTIONS: dict[str, Any] = {
    "seed": 20240601,
    "token": "test-token",
    "app_secret": "test-app-secret",
    # Tests finish in minutes; this only bounds a simulator whose parent vanished oddly.
    "max_seconds": 3600,
}


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorHandle]:
    with start_simulator(**SESSION_OPTIONS) as handle:
        yield handle


@pytest.fixture
def fresh_simulator(simulator: SimulatorHandle) -> SimulatorHandle:
    simulator.reset(config=True)
    return simulator

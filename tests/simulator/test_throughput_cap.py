"""The per-number cap: 130429 above it, never below it, and per-number overrides."""

from __future__ import annotations

import time

from tests.simulator.payloads import template_message

CAP = 20
SECONDS = 2.5


def _send_paced(sim, http, number: str, rate: float, *, absolute: bool) -> list[int]:
    """Send for SECONDS at `rate`; return the error code of each send (0 = accepted)."""
    codes = []
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < SECONDS and n < rate * SECONDS + 5:
        response = http.post(
            sim.messages_url(number),
            headers=sim.auth_headers,
            json=template_message(callback=f"out:{n}"),
        )
        codes.append(0 if response.status_code == 200 else response.json()["error"]["code"])
        n += 1
        if absolute:
            # Keep to the schedule: after a stall the sends catch up in a burst.
            time.sleep(max(0.0, start + n / rate - time.monotonic()))
        else:
            # Gap after each send, so a stall never turns into a burst.
            time.sleep(1 / rate)
    return codes


def test_sender_at_90_percent_of_the_cap_is_never_throttled(fresh_simulator, http):
    sim = fresh_simulator
    sim.configure(mps_overrides={"slow": CAP})
    codes = _send_paced(sim, http, "slow", CAP * 0.9, absolute=False)
    assert len(codes) >= 30
    assert set(codes) == {0}
    stats = sim.stats()
    assert stats["accepted_by_number"]["slow"] == len(codes)
    assert stats["max_accepted_1s_by_number"]["slow"] <= CAP


def test_sender_at_120_percent_of_the_cap_gets_130429_as_http_400(fresh_simulator, http):
    sim = fresh_simulator
    sim.configure(mps_overrides={"fast": CAP})
    codes = _send_paced(sim, http, "fast", CAP * 1.2, absolute=True)
    throttled = codes.count(130429)
    assert throttled >= 4
    assert set(codes) <= {0, 130429}
    stats = sim.stats()
    assert stats["errors"]["130429"] == throttled
    # The window never lets more than the cap through in any second.
    assert stats["max_accepted_1s_by_number"]["fast"] == CAP


def test_cap_is_per_phone_number_id(fresh_simulator, http):
    sim = fresh_simulator
    sim.configure(mps=5)
    results = {}
    for number in ("a", "b"):
        statuses = [
            http.post(
                sim.messages_url(number), headers=sim.auth_headers, json=template_message()
            ).status_code
            for _ in range(7)
        ]
        results[number] = statuses
    # Each number has its own 5 per second; the 6th and 7th in the same second are refused.
    assert results["a"] == [200] * 5 + [400] * 2
    assert results["b"] == [200] * 5 + [400] * 2
    assert sim.stats()["accepted_by_number"] == {"a": 5, "b": 5}

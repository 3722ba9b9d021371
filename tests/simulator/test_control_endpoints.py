"""/_sim/ control routes, the command line, and how the process stops."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import requests

from messaging.simulator.harness import PROJECT_ROOT, SimulatorError, start_simulator
from tests.simulator.payloads import template_message


def test_stats_count_requests_by_outcome_number_and_recipient(fresh_simulator, http):
    sim = fresh_simulator
    url = sim.messages_url("1065")
    http.post(
        url, headers=sim.auth_headers, json=template_message(to="111111111", callback="out:1")
    )
    http.post(
        url, headers=sim.auth_headers, json=template_message(to="111111111", callback="out:2")
    )
    http.post(
        url, headers=sim.auth_headers, json=template_message(to="222222222", callback="out:2")
    )
    http.post(url, json=template_message())
    stats = sim.stats(full=True)
    assert stats["requests"] == stats["send_requests"] == 4
    assert stats["accepted"] == 3
    assert stats["errors"] == {"190": 1}
    assert stats["accepted_by_number"] == {"1065": 3}
    assert stats["callbacks"]["exactly_once"] == 1
    assert stats["callbacks"]["duplicates"] == {"out:2": 2}
    assert stats["recipients"]["duplicates"] == {"111111111": 2}
    assert stats["accepted_by_callback"] == {"out:1": 1, "out:2": 2}
    assert stats["accepted_by_to"] == {"111111111": 2, "222222222": 1}


def test_reset_clears_counters_and_windows(fresh_simulator, http):
    sim = fresh_simulator
    sim.configure(mps=2)
    for _ in range(3):
        http.post(sim.messages_url("1065"), headers=sim.auth_headers, json=template_message())
    assert sim.stats()["errors"] == {"130429": 1}
    sim.reset()
    stats = sim.stats()
    assert (stats["requests"], stats["accepted"], stats["errors"]) == (0, 0, {})
    # The throughput window was cleared too, so the cap starts afresh.
    response = http.post(
        sim.messages_url("1065"), headers=sim.auth_headers, json=template_message()
    )
    assert response.status_code == 200
    # Settings survive a plain reset, and go back to the start values with config=True.
    assert sim.stats()["config"]["mps"] == 2
    sim.reset(config=True)
    assert sim.stats()["config"]["mps"] == 80


def test_config_changes_latency_at_runtime(fresh_simulator, http):
    sim = fresh_simulator
    sim.configure(latency_ms=300, jitter_ms=0)
    started = time.monotonic()
    http.post(sim.messages_url("1065"), headers=sim.auth_headers, json=template_message())
    assert time.monotonic() - started >= 0.29
    sim.configure(latency_ms=0)
    started = time.monotonic()
    http.post(sim.messages_url("1065"), headers=sim.auth_headers, json=template_message())
    assert time.monotonic() - started < 0.25


def test_latency_of_one_request_does_not_hold_up_others(fresh_simulator):
    sim = fresh_simulator
    sim.configure(latency_ms=500, mps=100_000)
    import concurrent.futures

    def send(n: int) -> int:
        return requests.post(
            sim.messages_url("1065"), headers=sim.auth_headers, json=template_message()
        ).status_code

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(send, range(40)))
    # Serialised, 40 answers would take 20 s; concurrently they take about one latency.
    assert statuses == [200] * 40
    assert time.monotonic() - started < 3.0


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"mps": "lots"}, "mps"),
        ({"error_rates": {"131000": 0.7, "131026": 0.5}}, "add up to more than 1"),
        ({"error_rates": {"oops": 0.1}}, "oops"),
        ({"reset_rate": 2}, "reset_rate"),
        ({"no_such_setting": 1}, "unknown setting"),
        ({"webhook_url": "https://example.com/hook"}, "only http://"),
    ],
)
def test_bad_config_is_refused_with_a_message_and_changes_nothing(fresh_simulator, patch, message):
    sim = fresh_simulator
    before = sim.stats()["config"]
    with pytest.raises(SimulatorError, match=message):
        sim.configure(**patch)
    assert sim.stats()["config"] == before


def test_unknown_routes_answer_404(fresh_simulator, http):
    assert http.get(fresh_simulator.base_url + "/_sim/nothing").status_code == 404
    response = http.get(fresh_simulator.base_url + "/v23.0/1065/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == 100


def test_management_command_serves_and_stops_on_sigterm(http):
    sim = start_simulator(use_manage_py=True, mps=7)
    try:
        assert sim.stats()["config"]["mps"] == 7
        sim.process.send_signal(signal.SIGTERM)
        assert sim.process.wait(10) == 0
    finally:
        sim.stop()


def test_max_seconds_stops_the_process_by_itself():
    sim = start_simulator(max_seconds=0.5)
    try:
        assert sim.process.wait(10) == 0
    finally:
        sim.stop()


def test_closing_stdin_stops_the_process():
    sim = start_simulator()
    try:
        sim.process.stdin.close()
        assert sim.process.wait(10) == 0
    finally:
        sim.stop()


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("--error-rate=131000", "expected CODE=FRACTION"),
        ("--error-rate=abc=0.1", "neither a number"),
        ("--mps-for=1065", "expected NUMBER_ID=MPS"),
        ("--reset-rate=1.5", "reset_rate"),
    ],
)
def test_bad_command_line_arguments_exit_with_a_clear_error(argument, message):
    result = subprocess.run(
        [sys.executable, "-m", "messaging.simulator", "--port=0", argument],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_arrivals_count_refused_sends_too_so_retries_are_visible(fresh_simulator, http):
    sim = fresh_simulator
    sim.configure(error_rates={"131000": 1.0})
    http.post(
        sim.messages_url("1065"), headers=sim.auth_headers, json=template_message(callback="out:9")
    )
    sim.configure(error_rates={})
    http.post(
        sim.messages_url("1065"), headers=sim.auth_headers, json=template_message(callback="out:9")
    )
    stats = sim.stats(full=True)
    assert stats["arrivals_by_callback"] == {"out:9": 2}
    assert stats["callback_arrivals"]["duplicates"] == {"out:9": 2}
    assert stats["accepted_by_callback"] == {"out:9": 1}
    assert stats["callbacks"]["more_than_once"] == 0

"""Start the simulator in a subprocess on a free loopback port and drive it from Python.

with start_simulator(latency_ms=100, jitter_ms=50, webhook_url=url) as sim:
    requests.post(sim.messages_url("1065"), headers=sim.auth_headers, json=...)
    assert sim.stats()["accepted"] == 1
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_RATE_FLAGS = {
    "error_rates": "--error-rate",
    "webhook_error_rates": "--webhook-error-rate",
    "mps_overrides": "--mps-for",
    "portfolios": "--portfolio-of",
}
_RENAMED = {
    "webhook_timeout_s": "webhook_timeout",
    "portfolio_window_s": "portfolio_window",
    "marketing_cap_window_s": "marketing_cap_window",
}


class SimulatorError(RuntimeError):
    pass


class SimulatorHandle:
    """A running simulator process: its URL, its counters and its runtime settings."""

    def __init__(self, process: subprocess.Popen[str], base_url: str, options: dict[str, Any]):
        self.process = process
        self.base_url = base_url
        self.token: str = options.get("token", "sim-token")
        self.app_secret: str = options.get("app_secret", "sim-app-secret")
        self.waba_id: str = options.get("waba_id", "100000000000001")

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def messages_url(self, phone_number_id: str, *, version: str = "v23.0") -> str:
        return f"{self.base_url}/{version}/{phone_number_id}/messages"

    def templates_url(self, *, version: str = "v23.0") -> str:
        return f"{self.base_url}/{version}/{self.waba_id}/message_templates"

    def stats(self, *, full: bool = False) -> dict[str, Any]:
        return self._call("GET", "/_sim/stats" + ("?full=1" if full else ""))

    def configure(self, **options: Any) -> dict[str, Any]:
        """Change settings at runtime (SimConfig field names); returns the new settings."""
        return self._call("POST", "/_sim/config", options)

    def reset(self, *, config: bool = False) -> None:
        """Clear counters (and, with `config=True`, go back to the start options)."""
        self._call("POST", "/_sim/reset", {"config": config})

    def template_event(self, **event: Any) -> dict[str, Any]:
        """Change a template's status or quality and send its webhook (name, language, status
        or quality); returns the webhook's field and value."""
        return self._call("POST", "/_sim/template_event", event)

    def number_event(self, **event: Any) -> dict[str, Any]:
        """Send a phone_number_quality_update webhook (event, current_limit)."""
        return self._call("POST", "/_sim/number_event", event)

    def capability_event(self, **event: Any) -> dict[str, Any]:
        """Send a business_capability_update (max_daily_conversations_per_business)."""
        return self._call("POST", "/_sim/capability_event", event)

    def phone_number_url(self, phone_number_id: str, *, version: str = "v23.0") -> str:
        return f"{self.base_url}/{version}/{phone_number_id}"

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is not None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        # base_url is always the http://127.0.0.1 address the simulator printed.
        request = urllib.request.Request(self.base_url + path, data=data, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise SimulatorError(f"{method} {path}: {exc.code} {exc.read()[:300]!r}") from exc

    def __enter__(self) -> SimulatorHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _arguments(options: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for name, value in options.items():
        if value is None or value is False:
            continue
        if name in _RATE_FLAGS:
            args += [f"{_RATE_FLAGS[name]}={code}={rate}" for code, rate in value.items()]
            continue
        flag = "--" + _RENAMED.get(name, name).replace("_", "-")
        args += [flag] if value is True else [f"{flag}={value}"]
    return args


def start_simulator(
    *, startup_timeout: float = 15.0, use_manage_py: bool = False, **options: Any
) -> SimulatorHandle:
    """Launch the simulator (options: SimConfig fields or CLI flag names) and wait until it answers.

    The process gets `--port 0` unless a port is given, and stops when the handle is stopped,
    when this Python process exits (atexit), or when its stdin pipe closes (parent killed).
    """
    options.setdefault("port", 0)
    if use_manage_py:
        command = [sys.executable, "manage.py", "simulate_whatsapp"]
    else:
        command = [sys.executable, "-m", "messaging.simulator"]
    command += [*_arguments(options), "--exit-on-stdin-eof"]
    process = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    handle = SimulatorHandle(process, "", options)
    atexit.register(handle.stop)
    try:
        handle.base_url = _wait_for_url(process, startup_timeout)
        handle.stats()
    except Exception:
        handle.stop()
        raise
    return handle


def _wait_for_url(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([process.stdout], [], [], remaining)
        if not ready:
            break
        line = process.stdout.readline()
        if not line:
            raise SimulatorError(f"simulator exited with code {process.wait()} before listening")
        if line.startswith("listening on "):
            return line.removeprefix("listening on ").strip()
    raise SimulatorError(f"simulator did not start listening within {timeout} s")

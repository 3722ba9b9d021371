"""The simulator's settings: one frozen dataclass, built from the command line or a JSON patch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from messaging.simulator.errors import WEBHOOK_ONLY_CODES, parse_code

ErrorCode = int | str


@dataclass(frozen=True)
class SimConfig:
    # Fixed demo credentials: the simulator only ever listens on loopback.
    token: str = "sim-token"  # noqa: S105
    app_secret: str = "sim-app-secret"  # noqa: S105
    # Throughput cap per phone-number-id (messages accepted in any 1 s window).
    mps: int = 80
    mps_overrides: dict[str, int] = field(default_factory=dict)
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    # Fraction of sends answered with an error, per code (int) or bare-HTTP pseudo code (str).
    error_rates: dict[ErrorCode, float] = field(default_factory=dict)
    # Fraction of sends accepted, then failed by a status webhook with that code.
    webhook_error_rates: dict[int, float] = field(default_factory=dict)
    # Drop the connection without answering: before processing, or after accepting.
    reset_rate: float = 0.0
    reset_after_accept_rate: float = 0.0
    webhook_url: str | None = None
    delivered_rate: float = 0.95
    read_rate: float = 0.6
    # Share of read messages whose `delivered` status is skipped (read instantly).
    read_skips_delivered_rate: float = 0.1
    # Share of read messages the user answers: with a text, or with an opt-out keyword (STOP).
    reply_rate: float = 0.0
    opt_out_rate: float = 0.0
    webhook_duplicate_rate: float = 0.0
    webhook_shuffle: bool = False
    webhook_batch_size: int = 50
    # Gap between a message's sent / delivered / read statuses.
    webhook_delay_ms: float = 100.0
    webhook_timeout_s: float = 5.0
    webhook_retries: int = 3
    waba_id: str = "100000000000001"
    display_phone_number: str = "15550000000"
    # Reject sends of a template (name, language) that is not APPROVED in the list (132001).
    strict_templates: bool = False
    # Meta's limits beyond throughput (messaging/simulator/limits.py); the defaults turn them off.
    # Unique recipients per business portfolio over a moving window (0 = no limit), and the
    # code a send to one more recipient fails with (Meta documents none).
    portfolio_limit: int = 0
    portfolio_window_s: float = 86400.0
    portfolio_limit_code: int = 131048
    # phone-number-id -> portfolio id; numbers not listed share the portfolio "default".
    portfolios: dict[str, str] = field(default_factory=dict)
    # 131049 for marketing templates to US (+1) numbers.
    us_marketing_blocked: bool = False
    # At most this many marketing templates to one user per moving window (0 = no cap).
    marketing_cap: int = 0
    marketing_cap_window_s: float = 86400.0
    # Where those refusals show: "response" (an error answer) or "webhook" (accepted, then a
    # failed status webhook, as Meta mostly reports 131049).
    limit_errors_via: str = "response"
    # What GET /{PHONE_NUMBER_ID} answers (sync_numbers): every number reports these, unless
    # `numbers` overrides some of them for one phone-number-id (an "error" code there makes
    # the GET fail with it, e.g. {"1065": {"error": 100}}).
    messaging_tier: str = "TIER_UNLIMITED"
    quality_rating: str = "GREEN"
    number_status: str = "CONNECTED"
    verified_name: str = "Simulated Business"
    numbers: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What GET /{WABA_ID}?fields=owner_business_info answers (sync_numbers' portfolio), per
    # WABA id: the owning business {"id": "…", "name": "…"}, or {"error": CODE} to fail the
    # GET. A WABA not listed answers without owner_business_info (its portfolio unknown).
    businesses: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int | None = None

    def mps_for(self, phone_number_id: str) -> int:
        return self.mps_overrides.get(phone_number_id, self.mps)

    def portfolio_of(self, phone_number_id: str) -> str:
        return self.portfolios.get(phone_number_id, "default")

    def replace(self, **changes: Any) -> SimConfig:
        """A validated copy with `changes` applied (values as JSON or Python gives them)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown}; known: {sorted(known)}")
        coerced = {}
        for name, value in changes.items():
            try:
                coerced[name] = _coerce(name, value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name}: {value!r} is not valid ({exc})") from None
        new = dataclasses.replace(self, **coerced)
        new.validate()
        return new

    def validate(self) -> None:
        for name in (
            "reset_rate",
            "reset_after_accept_rate",
            "delivered_rate",
            "read_rate",
            "read_skips_delivered_rate",
            "reply_rate",
            "opt_out_rate",
            "webhook_duplicate_rate",
        ):
            _check_fraction(name, getattr(self, name))
        for name, rates in (
            ("error_rates", self.error_rates),
            ("webhook_error_rates", self.webhook_error_rates),
        ):
            for code, rate in rates.items():
                _check_fraction(f"{name}[{code}]", rate)
            if sum(rates.values()) > 1.0 + 1e-9:
                raise ValueError(f"{name}: the fractions add up to more than 1")
        if self.mps < 1 or any(v < 1 for v in self.mps_overrides.values()):
            raise ValueError("mps: must be at least 1 per number")
        if self.latency_ms < 0 or self.jitter_ms < 0 or self.webhook_delay_ms < 0:
            raise ValueError("latency_ms, jitter_ms, webhook_delay_ms: must not be negative")
        if self.webhook_batch_size < 1 or self.webhook_retries < 0 or self.webhook_timeout_s <= 0:
            raise ValueError("webhook_batch_size >= 1, webhook_retries >= 0, webhook_timeout_s > 0")
        if self.portfolio_limit < 0 or self.marketing_cap < 0:
            raise ValueError("portfolio_limit, marketing_cap: must not be negative (0 = off)")
        if self.portfolio_window_s <= 0 or self.marketing_cap_window_s <= 0:
            raise ValueError("portfolio_window_s, marketing_cap_window_s: must be positive")
        if self.limit_errors_via not in LIMIT_ERROR_CHANNELS:
            raise ValueError(f"limit_errors_via: expected one of {sorted(LIMIT_ERROR_CHANNELS)}")
        for waba_id, business in self.businesses.items():
            if "error" in business:
                if isinstance(business["error"], bool) or not isinstance(business["error"], int):
                    raise ValueError(f"businesses[{waba_id}]: error must be a numeric code")
            elif not isinstance(business.get("id"), str) or not business["id"]:
                raise ValueError(f'businesses[{waba_id}]: expected {{"id", "name"}} or "error"')
        if self.webhook_url and not self.webhook_url.startswith("http://"):
            raise ValueError(f"webhook_url {self.webhook_url!r}: only http:// URLs are supported")

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["error_rates"] = {str(k): v for k, v in self.error_rates.items()}
        data["webhook_error_rates"] = {str(k): v for k, v in self.webhook_error_rates.items()}
        data["token"] = "***"  # noqa: S105
        data["app_secret"] = "***"  # noqa: S105
        return data


LIMIT_ERROR_CHANNELS = frozenset({"response", "webhook"})
_INTEGERS = frozenset(
    {
        "mps",
        "webhook_batch_size",
        "webhook_retries",
        "portfolio_limit",
        "portfolio_limit_code",
        "marketing_cap",
    }
)


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: {value!r} is not a fraction between 0 and 1")


def parse_rate_spec(spec: str) -> tuple[ErrorCode, float]:
    """`"131000=0.05"` → `(131000, 0.05)`; ValueError naming the bad part otherwise."""
    code_text, sep, fraction_text = spec.partition("=")
    if not sep:
        raise ValueError(f"{spec!r}: expected CODE=FRACTION, e.g. 131000=0.05")
    try:
        fraction = float(fraction_text)
    except ValueError:
        raise ValueError(f"{spec!r}: fraction {fraction_text!r} is not a number") from None
    return parse_code(code_text), fraction


def _coerce(name: str, value: Any) -> Any:
    if name == "error_rates":
        return {parse_code(k): float(v) for k, v in dict(value).items()}
    if name == "webhook_error_rates":
        rates = {}
        for k, v in dict(value).items():
            code = parse_code(k)
            if not isinstance(code, int):
                raise ValueError(f"webhook_error_rates: {k!r} must be a numeric error code")
            rates[code] = float(v)
        return rates
    if name == "mps_overrides":
        return {str(k): int(v) for k, v in dict(value).items()}
    if name == "portfolios":
        return {str(k): str(v) for k, v in dict(value).items()}
    if name in {"numbers", "businesses"}:
        return {str(k): dict(v) for k, v in dict(value).items()}
    if name in _INTEGERS:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("expected a whole number")
        return int(value)
    if name in {"webhook_shuffle", "strict_templates", "us_marketing_blocked"}:
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected true or false, got {value!r}")
        return value
    if name in {
        "token",
        "app_secret",
        "waba_id",
        "display_phone_number",
        "limit_errors_via",
        "messaging_tier",
        "quality_rating",
        "number_status",
        "verified_name",
    }:
        return str(value)
    if name in {"webhook_url", "seed"}:
        return value
    return float(value)


# Codes that only make sense in a webhook are still accepted in error_rates (the real API sends
# some in both places); this set is what the CLI help suggests for --webhook-error-rate.
SUGGESTED_WEBHOOK_CODES = sorted(WEBHOOK_ONLY_CODES)

"""Command-line options of `python -m messaging.simulator` and `manage.py simulate_whatsapp`."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from messaging.simulator.app import SimulatorApp
from messaging.simulator.config import (
    LIMIT_ERROR_CHANNELS,
    SUGGESTED_WEBHOOK_CODES,
    SimConfig,
    parse_rate_spec,
)
from messaging.simulator.server import ServerOptions, run
from messaging.simulator.templates import load_templates


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SimConfig()
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="bind address (loopback by default)")
    add("--port", type=int, default=8790, help="0 picks a free port")
    add("--token", default=d.token, help="the only access token accepted")
    add("--app-secret", default=d.app_secret, help="key of the webhook HMAC signature")
    add("--mps", type=int, default=d.mps, help="messages/s accepted per phone-number-id")
    add("--mps-for", action="append", default=[], metavar="NUMBER_ID=MPS", help="per number cap")
    add("--latency-ms", type=float, default=d.latency_ms)
    add("--jitter-ms", type=float, default=d.jitter_ms, help="latency ± uniform jitter")
    add(
        "--error-rate",
        action="append",
        default=[],
        metavar="CODE=FRACTION",
        help="answer that fraction of sends with CODE (or http500/http503/http429)",
    )
    add(
        "--webhook-error-rate",
        action="append",
        default=[],
        metavar="CODE=FRACTION",
        help=f"accept, then fail by webhook, e.g. {SUGGESTED_WEBHOOK_CODES}",
    )
    add("--reset-rate", type=float, default=0.0, help="drop before processing")
    add("--reset-after-accept-rate", type=float, default=0.0, help="accept, then drop")
    add("--webhook-url", default=None, help="http:// URL receiving signed status webhooks")
    add("--delivered-rate", type=float, default=d.delivered_rate)
    add("--read-rate", type=float, default=d.read_rate)
    add("--read-skips-delivered-rate", type=float, default=d.read_skips_delivered_rate)
    add("--reply-rate", type=float, default=d.reply_rate, help="read messages answered by text")
    add("--opt-out-rate", type=float, default=d.opt_out_rate, help="read messages answered STOP")
    add("--webhook-duplicate-rate", type=float, default=0.0)
    add("--webhook-shuffle", action="store_true", help="deliver statuses out of order")
    add("--webhook-batch-size", type=int, default=d.webhook_batch_size)
    add("--webhook-delay-ms", type=float, default=d.webhook_delay_ms)
    add("--webhook-timeout", type=float, default=d.webhook_timeout_s, help="seconds per POST")
    add("--webhook-retries", type=int, default=d.webhook_retries)
    add("--webhook-workers", type=int, default=4, help="concurrent webhook connections")
    add("--waba-id", default=d.waba_id)
    add("--display-phone-number", default=d.display_phone_number)
    add("--templates", default=None, metavar="PATH", help='JSON file {"data": [...]}')
    add("--strict-templates", action="store_true", help="132001 for unknown templates")
    add("--portfolio-limit", type=int, default=0, help="unique recipients per portfolio (0 off)")
    add("--portfolio-window", type=float, default=d.portfolio_window_s, help="its window, s")
    add("--portfolio-limit-code", type=int, default=d.portfolio_limit_code)
    add(
        "--portfolio-of",
        action="append",
        default=[],
        metavar="NUMBER_ID=PORTFOLIO",
        help='portfolio of a number (unlisted numbers share "default")',
    )
    add("--messaging-tier", default=d.messaging_tier, help="what the number GET reports")
    add("--quality-rating", default=d.quality_rating, help="GREEN, YELLOW, RED or UNKNOWN")
    add("--number-status", default=d.number_status, help="CONNECTED, FLAGGED, RESTRICTED…")
    add("--us-marketing-blocked", action="store_true", help="131049 for marketing to US +1")
    add("--marketing-cap", type=int, default=0, help="marketing templates per user (0 off)")
    add("--marketing-cap-window", type=float, default=d.marketing_cap_window_s, help="seconds")
    add(
        "--limit-errors-via",
        choices=sorted(LIMIT_ERROR_CHANNELS),
        default=d.limit_errors_via,
        help="refuse over-limit sends in the answer or by a failed status webhook",
    )
    add("--seed", type=int, default=None, help="seed of every random choice")
    add("--max-seconds", type=float, default=None, help="stop by itself after this long")
    add("--exit-on-stdin-eof", action="store_true", help="stop when stdin closes")
    add("--log-level", default="WARNING")


def _pairs(specs: list[str], what: str) -> dict[Any, float]:
    rates: dict[Any, float] = {}
    for spec in specs:
        try:
            code, fraction = parse_rate_spec(spec)
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None
        rates[code] = fraction
    return rates


def _mps_overrides(specs: list[str]) -> dict[str, int]:
    overrides = {}
    for spec in specs:
        number, sep, mps = spec.partition("=")
        if not sep or not mps.isdigit():
            raise ValueError(f"--mps-for {spec!r}: expected NUMBER_ID=MPS, e.g. 1065403=20")
        overrides[number] = int(mps)
    return overrides


def _portfolios(specs: list[str]) -> dict[str, str]:
    portfolios = {}
    for spec in specs:
        number, sep, portfolio = spec.partition("=")
        if not sep or not number or not portfolio:
            raise ValueError(f"--portfolio-of {spec!r}: expected NUMBER_ID=PORTFOLIO, e.g. 1065=p1")
        portfolios[number] = portfolio
    return portfolios


def build(options: dict[str, Any]) -> tuple[SimulatorApp, ServerOptions]:
    """The app and server options from parsed arguments; ValueError says which one is wrong."""
    config = SimConfig().replace(
        token=options["token"],
        app_secret=options["app_secret"],
        mps=options["mps"],
        mps_overrides=_mps_overrides(options["mps_for"]),
        latency_ms=options["latency_ms"],
        jitter_ms=options["jitter_ms"],
        error_rates=_pairs(options["error_rate"], "--error-rate"),
        webhook_error_rates=_pairs(options["webhook_error_rate"], "--webhook-error-rate"),
        reset_rate=options["reset_rate"],
        reset_after_accept_rate=options["reset_after_accept_rate"],
        webhook_url=options["webhook_url"],
        delivered_rate=options["delivered_rate"],
        read_rate=options["read_rate"],
        read_skips_delivered_rate=options["read_skips_delivered_rate"],
        reply_rate=options["reply_rate"],
        opt_out_rate=options["opt_out_rate"],
        webhook_duplicate_rate=options["webhook_duplicate_rate"],
        webhook_shuffle=options["webhook_shuffle"],
        webhook_batch_size=options["webhook_batch_size"],
        webhook_delay_ms=options["webhook_delay_ms"],
        webhook_timeout_s=options["webhook_timeout"],
        webhook_retries=options["webhook_retries"],
        waba_id=options["waba_id"],
        display_phone_number=options["display_phone_number"],
        strict_templates=options["strict_templates"],
        portfolio_limit=options["portfolio_limit"],
        portfolio_window_s=options["portfolio_window"],
        portfolio_limit_code=options["portfolio_limit_code"],
        portfolios=_portfolios(options["portfolio_of"]),
        us_marketing_blocked=options["us_marketing_blocked"],
        marketing_cap=options["marketing_cap"],
        marketing_cap_window_s=options["marketing_cap_window"],
        limit_errors_via=options["limit_errors_via"],
        messaging_tier=options["messaging_tier"],
        quality_rating=options["quality_rating"],
        number_status=options["number_status"],
        seed=options["seed"],
    )
    if options["webhook_workers"] < 1:
        raise ValueError("--webhook-workers: must be at least 1")
    app = SimulatorApp(
        config, load_templates(options["templates"]), webhook_workers=options["webhook_workers"]
    )
    server = ServerOptions(
        host=options["host"],
        port=options["port"],
        max_seconds=options["max_seconds"],
        exit_on_stdin_eof=options["exit_on_stdin_eof"],
    )
    return app, server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m messaging.simulator", description="WhatsApp Cloud API simulator"
    )
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    logging.basicConfig(level=options["log_level"].upper(), format="%(levelname)s %(message)s")
    try:
        app, server = build(options)
    except ValueError as exc:
        parser.error(str(exc))
    run(app, server)

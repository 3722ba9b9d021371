"""Error bodies in Meta's shape, and the HTTP status the real API uses for each code."""

from __future__ import annotations

import json
import secrets

# Pseudo codes: a bare HTTP error without Meta's JSON body (a proxy or load balancer answering).
BARE_HTTP_ERRORS: dict[str, tuple[int, bytes, str]] = {
    "http500": (500, b"<html><body><h1>500 Internal Server Error</h1></body></html>", "text/html"),
    "http503": (503, b"", "text/html"),
    "http429": (429, b"Too Many Requests", "text/plain"),
}

# Errors that real life mostly reports only in a status webhook, never in the send response.
WEBHOOK_ONLY_CODES = frozenset({131026, 131049, 131050, 132015, 130472})

_HTTP_STATUS = {
    0: 401,
    190: 401,
    10: 403,
    368: 403,
    131031: 403,
    132001: 404,
    131000: 500,
    131016: 500,
    131057: 500,
    2: 503,
    133004: 503,
}

TITLES = {
    0: "AuthException",
    1: "API Unknown",
    2: "API Service",
    4: "API Too Many Calls",
    10: "Permission Denied",
    100: "Invalid parameter",
    190: "Access token has expired",
    368: "Temporarily blocked for policies violations",
    80007: "Rate limit issues",
    130429: "Rate limit hit",
    130472: "User's number is part of an experiment",
    131000: "Something went wrong",
    131005: "Access denied",
    131008: "Required parameter is missing",
    131009: "Parameter value is not valid",
    131016: "Service unavailable",
    131021: "Recipient cannot be sender",
    131026: "Message Undeliverable",
    131031: "Business Account locked",
    131042: "Business eligibility payment issue",
    131047: "Re-engagement message",
    131048: "Spam rate limit hit",
    131049: "This message was not delivered to maintain healthy ecosystem engagement.",
    131050: "User has stopped receiving marketing messages",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    131057: "Account in maintenance mode",
    132000: "Number of parameters does not match the expected number of params",
    132001: "Template name does not exist in the translation",
    132015: "Template is Paused",
    132016: "Template is Disabled",
    133004: "Server temporarily unavailable",
}


def http_status_for(code: int) -> int:
    """The HTTP status Meta answers with for `code` (400 for most, throttles included)."""
    return _HTTP_STATUS.get(code, 400)


def parse_code(raw: str | int) -> int | str:
    """A Meta error code as int, or one of the bare-HTTP pseudo codes; ValueError otherwise."""
    if isinstance(raw, int):
        return raw
    text = str(raw).strip().lower()
    if text in BARE_HTTP_ERRORS:
        return text
    try:
        return int(text)
    except ValueError:
        pseudo = ", ".join(sorted(BARE_HTTP_ERRORS))
        raise ValueError(f"error code {raw!r} is neither a number nor one of {pseudo}") from None


def error_object(code: int, details: str | None = None) -> dict:
    """The `error` object as the send response carries it (§2.1)."""
    title = TITLES.get(code, "Simulated error")
    return {
        "message": f"(#{code}) {title}",
        "type": "OAuthException",
        "code": code,
        "error_data": {
            "messaging_product": "whatsapp",
            "details": details or f"{title} (simulated)",
        },
        "fbtrace_id": "Sim" + secrets.token_urlsafe(9),
    }


def error_body(code: int, details: str | None = None) -> bytes:
    return json.dumps({"error": error_object(code, details)}).encode()


def webhook_error(code: int) -> dict:
    """The `errors[]` item of a failed status webhook (§4.3)."""
    title = TITLES.get(code, "Simulated error")
    return {
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": f"{title} (simulated)"},
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }

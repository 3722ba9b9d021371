"""`X-Hub-Signature-256`: HMAC-SHA256 of the raw body keyed by the app secret."""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings

PREFIX = "sha256="


def sign(body: bytes, secret: str) -> str:
    """The header value Meta sends for `body` (tests and the benchmark sign with it too)."""
    return PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(body: bytes, header: str | None) -> bool:
    """True only for a well-formed header matching the configured secret (empty never does)."""
    secret = settings.WHATSAPP_APP_SECRET
    if not secret or not header or not header.startswith(PREFIX):
        return False
    return hmac.compare_digest(sign(body, secret).encode(), header.encode("ascii", "replace"))

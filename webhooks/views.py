"""The WhatsApp webhook endpoint: verify, store in one INSERT, answer 200. Nothing else."""

from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseForbidden,
    HttpResponseNotAllowed,
)
from django.views.decorators.csrf import csrf_exempt

from webhooks.drain import store_raw_event
from webhooks.payload import PayloadError, check_envelope
from webhooks.signature import signature_ok
from webhooks.tasks import kick_drain

logger = logging.getLogger(__name__)


def _handshake(request: HttpRequest) -> HttpResponse:
    token = settings.WHATSAPP_VERIFY_TOKEN
    given = request.GET.get("hub.verify_token", "")
    if (
        request.GET.get("hub.mode") == "subscribe"
        and token
        and hmac.compare_digest(given.encode(), token.encode())
    ):
        return HttpResponse(request.GET.get("hub.challenge", ""), content_type="text/plain")
    logger.warning("webhook verification refused (mode %r)", request.GET.get("hub.mode"))
    return HttpResponseForbidden("verification token mismatch")


@csrf_exempt
def whatsapp_webhook(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _handshake(request)
    if request.method != "POST":
        return HttpResponseNotAllowed(["GET", "POST"])
    body = request.body
    # Before parsing anything: an unsigned body is never parsed nor stored.
    if not signature_ok(body, request.headers.get("X-Hub-Signature-256")):
        logger.warning("webhook refused: bad or missing signature (%d bytes)", len(body))
        return HttpResponseForbidden("bad signature")
    try:
        check_envelope(body)
    except PayloadError as exc:
        logger.warning("webhook rejected (%d bytes): %s", len(body), exc)
        return HttpResponseBadRequest(f"unreadable webhook body: {exc}")
    store_raw_event(body)
    kick_drain()
    return HttpResponse("OK")


@csrf_exempt
def bare(request: HttpRequest) -> HttpResponse:
    """Benchmark baseline only (WEBHOOK_BENCH_BARE_VIEW): Django answering 200, nothing more."""
    return HttpResponse("OK")

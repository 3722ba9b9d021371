"""The WhatsApp webhook endpoint: verify, store in one INSERT, answer 200. Nothing else."""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
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


class RefusalLog:
    """One warning line per refused webhook, at most one per `window` seconds per process;
    the next line says how many were refused meanwhile. A flood of forged or broken bodies
    (anyone can POST here) must not flood the log."""

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window, self.clock = window, clock
        self.last = float("-inf")
        self.unlogged = 0
        self._lock = threading.Lock()

    def refuse(self, response: HttpResponse, message: str, *args: object) -> HttpResponse:
        with self._lock:
            now = self.clock()
            if now - self.last < self.window:
                self.unlogged += 1
                message = ""
            else:
                more, self.unlogged, self.last = self.unlogged, 0, now
                if more:
                    message += f" (and {more} more refused in the last {self.window:.0f} s)"
        if message:
            logger.warning(message, *args)
        # Django's request logger would log the 4xx again: this line is the only one.
        response._has_been_logged = True  # type: ignore[attr-defined]
        return response


refusals = RefusalLog()


def read_body(request: HttpRequest) -> bytes:
    """The raw body, chunked uploads included.

    Django reads a request without Content-Length as empty; a WSGI server that de-chunks
    (gunicorn does) hands the whole body over as wsgi.input, read here up to the same
    DATA_UPLOAD_MAX_MEMORY_SIZE limit.
    """
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not chunked or request.META.get("CONTENT_LENGTH"):
        return request.body
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    stream = request.META.get("wsgi.input")
    body = stream.read(limit + 1) if stream is not None and limit is not None else b""
    if limit is not None and len(body) > limit:
        raise RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.")
    return body


def _handshake(request: HttpRequest) -> HttpResponse:
    token = settings.WHATSAPP_VERIFY_TOKEN
    given = request.GET.get("hub.verify_token", "")
    if (
        request.GET.get("hub.mode") == "subscribe"
        and token
        and hmac.compare_digest(given.encode(), token.encode())
    ):
        return HttpResponse(request.GET.get("hub.challenge", ""), content_type="text/plain")
    return refusals.refuse(
        HttpResponseForbidden("verification token mismatch"),
        "webhook verification refused (mode %r)",
        request.GET.get("hub.mode"),
    )


@csrf_exempt
def whatsapp_webhook(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _handshake(request)
    if request.method != "POST":
        return HttpResponseNotAllowed(["GET", "POST"])
    try:
        body = read_body(request)
    except RequestDataTooBig:
        return refusals.refuse(
            HttpResponse("body too large", status=413),
            "webhook refused: body over DATA_UPLOAD_MAX_MEMORY_SIZE (%s bytes)",
            settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
        )
    # Before parsing anything: an unsigned body is never parsed nor stored.
    if not signature_ok(body, request.headers.get("X-Hub-Signature-256")):
        return refusals.refuse(
            HttpResponseForbidden("bad signature"),
            "webhook refused: bad or missing signature (%d bytes)",
            len(body),
        )
    try:
        check_envelope(body)
    except PayloadError as exc:
        return refusals.refuse(
            HttpResponseBadRequest(f"unreadable webhook body: {exc}"),
            "webhook rejected (%d bytes): %s",
            len(body),
            exc,
        )
    store_raw_event(body)
    kick_drain()
    return HttpResponse("OK")


@csrf_exempt
def bare(request: HttpRequest) -> HttpResponse:
    """Benchmark baseline only (WEBHOOK_BENCH_BARE_VIEW): Django answering 200, nothing more."""
    return HttpResponse("OK")

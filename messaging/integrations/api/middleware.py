"""Refuse an oversized API request body from its Content-Length, before anything reads it."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from messaging.integrations.api.errors import error_response

API_PREFIX = "/api/"
UPLOAD_SUFFIX = "/campaigns/upload"


class ApiBodyLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIX) and request.method in ("POST", "PUT", "PATCH"):
            limit = (
                settings.API_MAX_UPLOAD_BYTES
                if request.path.rstrip("/").endswith(UPLOAD_SUFFIX)
                else settings.API_MAX_BODY_BYTES
            )
            if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
                return error_response(
                    411, "length_required", "send a Content-Length (no chunked bodies)"
                )
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return error_response(400, "bad_content_length", "Content-Length is not a number")
            if length > limit:
                return error_response(
                    413,
                    "body_too_large",
                    f"the body is {length} bytes; at most {limit} bytes are accepted here",
                )
        return self.get_response(request)

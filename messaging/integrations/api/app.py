"""The API object: version 1, key auth on every operation, JSON errors everywhere.

django-ninja, not Django REST framework: its pydantic schemas give request validation, the
response shapes and the OpenAPI document from one declaration, and a request costs a fraction
of DRF's serializer machinery (the accept-a-send path must stay within a few milliseconds).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from messaging.integrations.api import campaigns, lists, messages
from messaging.integrations.api.auth import ApiKeyAuth
from messaging.integrations.api.errors import ApiError, error_response, field_of, from_api_error

api = NinjaAPI(
    title="wacampaigns API",
    version="1",
    description=(
        "Send WhatsApp messages from code and run campaigns. Authenticate with "
        "`Authorization: Bearer <API key>` (`manage.py create_api_key`). Errors are "
        '`{"error": {"code", "message", "field"}}`; 429 answers carry Retry-After.'
    ),
    auth=ApiKeyAuth(),
    urls_namespace="api-v1",
    openapi_url="/openapi.json",
    docs_url="/docs",
)
api.add_router("", messages.router)
api.add_router("", campaigns.router)
api.add_router("", lists.router)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return from_api_error(request, exc)


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    first = exc.errors[0] if exc.errors else {}
    field = field_of(first.get("loc", ()))
    message = str(first.get("msg", "invalid request"))
    return error_response(422, "invalid_request", message, field)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(401, "invalid_api_key", "send `Authorization: Bearer <API key>`")


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return error_response(exc.status_code, "bad_request", str(exc))

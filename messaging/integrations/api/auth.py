"""Who is calling (an API key in `Authorization: Bearer …`), what it may do, how often."""

from __future__ import annotations

from django.http import HttpRequest
from ninja.security import HttpBearer

from messaging.integrations import lookup_cache
from messaging.integrations.api.errors import ApiError
from messaging.integrations.api.ratelimit import check_rate
from messaging.integrations.keys import authenticate
from messaging.integrations.models import ApiKey


class ApiKeyAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> ApiKey:
        token = token.strip()
        api_key = authenticate(token)
        if api_key is None:
            raise ApiError(401, "invalid_api_key", "the API key is unknown or revoked")
        version = check_rate(api_key)
        if version is not None and lookup_cache.observe(version):
            # A key, number or template changed since this process cached them: the key
            # may have been one of them (revoked, scopes changed), so read it again.
            api_key = authenticate(token)
            if api_key is None:
                raise ApiError(401, "invalid_api_key", "the API key is unknown or revoked")
        return api_key

    def __call__(self, request: HttpRequest) -> ApiKey:
        if not request.headers.get("Authorization"):
            raise ApiError(401, "missing_api_key", "send `Authorization: Bearer <API key>`")
        result = super().__call__(request)
        if result is None:  # a header that is not "Bearer <key>"
            raise ApiError(401, "invalid_api_key", "send `Authorization: Bearer <API key>`")
        return result


def require(request: HttpRequest, scope: str) -> ApiKey:
    """The caller's key if it has `scope`, else 403."""
    api_key: ApiKey = request.auth  # type: ignore[attr-defined]
    if scope not in api_key.scopes:
        raise ApiError(403, "missing_scope", f"this API key lacks the scope {str(scope)!r}")
    return api_key

"""API keys: made once (the key is shown then and never again), stored as a SHA-256 hash.

A key is `wac_<prefix>_<secret>` with 190 random bits: a fast hash is enough for a secret of
that strength (a slow password hash would only add latency to every request), and the prefix
finds the row without scanning. The row is kept in the per-process lookup cache
(messaging.integrations.lookup_cache): a revocation or a change of scopes is seen by the next
request while Redis is up, within API_LOOKUP_CACHE_SECONDS otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils import timezone

from messaging.integrations import lookup_cache
from messaging.integrations.models import ApiKey

KEY_PREFIX = "wac_"


@dataclass(frozen=True)
class NewKey:
    api_key: ApiKey
    secret: str  # the whole key, to show once


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes, validated; ValueError naming the first unknown one."""
    known = set(ApiKey.Scope.values)
    scopes = list(dict.fromkeys(scopes))
    for scope in scopes:
        if scope not in known:
            raise ValueError(f"unknown scope {scope!r}; known: {', '.join(sorted(known))}")
    return scopes


def new_secret() -> tuple[str, str]:
    """(prefix, whole key)."""
    prefix = secrets.token_hex(4)
    return prefix, f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(24)}"


def create_api_key(*, name: str, scopes: Iterable[str]) -> NewKey:
    name = (name or "").strip()
    if not name:
        raise ValueError("the key needs a name")
    prefix, secret = new_secret()
    api_key = ApiKey.objects.create(
        name=name[:100], prefix=prefix, key_hash=_hash(secret), scopes=check_scopes(scopes)
    )
    return NewKey(api_key, secret)


def set_secret(api_key: ApiKey) -> str:
    """Give an unsaved ApiKey its key (admin's add form); returns the key to show once."""
    api_key.prefix, secret = new_secret()
    api_key.key_hash = _hash(secret)
    return secret


def authenticate(key: str) -> ApiKey | None:
    """The active key for this secret, or None (unknown, malformed or revoked)."""
    if not key.startswith(KEY_PREFIX) or key.count("_") < 2:
        return None
    prefix = key[len(KEY_PREFIX) :].split("_", 1)[0]
    cache_key = ("api_key", prefix)
    api_key = lookup_cache.get(cache_key)
    if api_key is None:
        api_key = ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True).first()
        if api_key is None:
            return None
        lookup_cache.put(cache_key, api_key)
    # Checked on every request, cached row or not: the cache is found by the public prefix.
    if not hmac.compare_digest(api_key.key_hash, _hash(key)):
        return None
    now = timezone.now()
    if api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() > 60:
        # At most once a minute: a write per request would cost more than the request.
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


def revoke(keys: QuerySet[ApiKey]) -> int:
    """Revoke the keys not revoked yet; how many. They stop working as the module says."""
    count = keys.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
    lookup_cache.changed()
    return count

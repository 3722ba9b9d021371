"""The suppression hash: how a number stays blocked after everything else about it is erased.

Every `Suppression` row stores `phone_hash` = HMAC-SHA256(pepper, E.164), hex. Erasing a
contact (`campaigns.erasure`) clears the clear-text `phone` of its suppression but keeps the
hash, so every check that asks "is this number suppressed?" matches on the hash. The same
HMAC is computable inside PostgreSQL with built-in `sha256()` (`phone_hash_sql`), so set-based
SQL (the import, the claim) can match without a round trip through Python.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import QuerySet

if TYPE_CHECKING:
    from campaigns.models import Suppression

_BLOCK = 64  # SHA-256 block size, for the HMAC pads


@cache
def _key(pepper: str, secret_key: str) -> bytes:
    if pepper:
        return pepper.encode()
    # Derived, not SECRET_KEY itself, so the hash never doubles as a signature oracle.
    return hmac.new(secret_key.encode(), b"wacampaigns.suppression", hashlib.sha256).digest()


def _current_key() -> bytes:
    return _key(settings.SUPPRESSION_HASH_PEPPER, settings.SECRET_KEY)


def phone_hash(phone: str) -> str:
    """The suppression hash of an E.164 number (64 hex characters)."""
    return hmac.new(_current_key(), phone.encode(), hashlib.sha256).hexdigest()


def phone_hashes(phones: Iterable[str]) -> dict[str, str]:
    """{phone: hash} for many numbers (one key lookup)."""
    key = _current_key()
    return {p: hmac.new(key, p.encode(), hashlib.sha256).hexdigest() for p in phones}


@cache
def _pads(key: bytes) -> tuple[bytes, bytes]:
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def phone_hash_sql(phone_expr: str) -> tuple[str, list[bytes]]:
    """PostgreSQL expression (and its parameters) equal to `phone_hash(<phone_expr>)`.

    HMAC spelled out with the built-in sha256() (PostgreSQL ≥ 11, no pgcrypto): the two pads
    are passed as parameters, so the key never appears in the SQL text or the logs.
    """
    inner, outer = _pads(_current_key())
    sql = (
        f"encode(sha256(%s::bytea || sha256(%s::bytea || convert_to({phone_expr}, 'UTF8'))), 'hex')"
    )
    return sql, [outer, inner]


def suppressions_matching(hashes: Iterable[str]) -> QuerySet[Suppression]:
    """The suppressions of these number hashes: the one test of "is this number suppressed?"
    (as a queryset, so a caller may fold it into a query of its own)."""
    from campaigns.models import Suppression  # models import this module for the hash

    return Suppression.objects.filter(phone_hash__in=list(hashes))


def suppressed_phones(phones: Iterable[str]) -> set[str]:
    """The numbers among `phones` that are suppressed (erased contacts' numbers included)."""
    hashes = phone_hashes(phones)
    found = set(suppressions_matching(hashes.values()).values_list("phone_hash", flat=True))
    return {phone for phone, h in hashes.items() if h in found}

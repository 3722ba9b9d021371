"""Idempotency-Key: the first request with a key does the work; repeats get its answer.

The key's row is inserted first, in the transaction that does the work. A concurrent repeat
blocks on the unique constraint until that transaction ends, then reads the stored answer, so
twenty identical requests at once still queue one message. A failed request stores nothing
(its transaction rolls back), so it may be retried with the same key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction
from django.http import HttpRequest

from messaging.integrations.api.errors import ApiError
from messaging.integrations.models import ApiKey, IdempotentRequest

HEADER = "HTTP_IDEMPOTENCY_KEY"
MAX_KEY = 255
_TABLE = IdempotentRequest._meta.db_table


def fingerprint(request: HttpRequest) -> str:
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    digest.update(request.body)
    return digest.hexdigest()


def run_once(
    request: HttpRequest, api_key: ApiKey, work: Callable[[], tuple[int, Any]]
) -> tuple[int, Any]:
    """(status, body) of `work`, or of the earlier request that used the same key."""
    key = request.META.get(HEADER, "").strip()
    if not key:
        return work()
    if len(key) > MAX_KEY:
        raise ApiError(400, "invalid_idempotency_key", f"at most {MAX_KEY} characters", "header")
    print_ = fingerprint(request)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {_TABLE} (api_key_id, key, fingerprint, response_status, "  # noqa: S608
                "response, created_at) VALUES (%s, %s, %s, 0, '{}'::jsonb, now()) "
                "ON CONFLICT (api_key_id, key) DO NOTHING RETURNING id",
                [api_key.pk, key, print_],
            )
            row = cursor.fetchone()
        if row is None:
            earlier = IdempotentRequest.objects.get(api_key=api_key, key=key)
            if earlier.fingerprint != print_:
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request",
                    "Idempotency-Key",
                )
            return earlier.response_status, earlier.response
        status, body = work()
        with connection.cursor() as cursor:
            # Raw, like the insert: this is on every keyed send (the ORM's update cost more
            # to build than to run).
            cursor.execute(
                f"UPDATE {_TABLE} SET response_status = %s, response = %s::jsonb WHERE id = %s",  # noqa: S608
                [status, json.dumps(body, separators=(",", ":")), row[0]],
            )
    return status, body

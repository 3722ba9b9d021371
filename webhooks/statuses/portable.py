"""The status apply path's SQL for databases without PostgreSQL's arrays and JSON record sets
(the SQLite demo), written with the ORM. Same inputs and results as the PostgreSQL statements
in matching.py and ladder.py, which stay the fast path; the tests run both on PostgreSQL.

Locks: on SQLite a transaction takes the database's write lock at BEGIN (transaction_mode
IMMEDIATE in config/settings.py), so appliers run one at a time; `select_for_update` keeps
the row locks on databases that have them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from campaigns.models import Contact
from messaging.models import OutboundMessage, OutboundStatus
from webhooks.models import StatusLog

S = OutboundStatus
T = TypeVar("T")
# Values per IN list: far below SQLite's bound-parameter limit.
_IN_CHUNK = 500
_LOG_COLUMNS = (
    "id",
    "wamid",
    "status",
    "timestamp",
    "callback_data",
    "recipient_id",
    "error_code",
    "error_title",
)


def _chunks(values: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def insert_logs(rows: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    """Insert the (wamid, status) pairs not logged yet; (id, wamid, status) of those inserted."""
    wanted = {(r["wamid"], r["status"]) for r in rows}
    wamids = sorted({wamid for wamid, _ in wanted})
    existing: set[tuple[str, str]] = set()
    for chunk in _chunks(wamids):
        existing.update(StatusLog.objects.filter(wamid__in=chunk).values_list("wamid", "status"))
    now = timezone.now()
    new = [
        StatusLog(
            wamid=r["wamid"],
            status=r["status"],
            timestamp=r["timestamp"],
            callback_data=r["callback_data"],
            recipient_id=r["recipient_id"],
            error_code=r["error_code"],
            error_title=r["error_title"],
            outbound_id=r["outbound_id"],
            received_at=now,
        )
        for r in rows
        if (r["wamid"], r["status"]) not in existing
    ]
    StatusLog.objects.bulk_create(new)
    inserted = []
    keys = {(log.wamid, log.status) for log in new}
    for chunk in _chunks(sorted({log.wamid for log in new})):
        for log_id, wamid, status in StatusLog.objects.filter(wamid__in=chunk).values_list(
            "id", "wamid", "status"
        ):
            if (wamid, status) in keys:
                inserted.append((log_id, wamid, status))
    return inserted


def lock_logs(
    *, wamids: Sequence[str] | None = None, since: datetime | None = None, limit: int
) -> list[tuple[Any, ...]]:
    """Unmatched log rows, oldest first: of these wamids, or (since `since`) those whose queue
    row is now known by wamid or by callback data ("out:<id>" of a row whose answer was lost)."""
    from webhooks.statuses.matching import callback_row_id

    logs = StatusLog.objects.filter(outbound__isnull=True).order_by("id").select_for_update()
    if wamids is not None:
        found: list[tuple[Any, ...]] = []
        for chunk in _chunks(sorted(wamids)):
            found += logs.filter(wamid__in=chunk).values_list(*_LOG_COLUMNS)
        return sorted(found)[:limit]
    assert since is not None
    known = Exists(OutboundMessage.objects.filter(wamid=OuterRef("wamid")))
    candidates = list(
        logs.filter(received_at__gte=since)
        .filter(Q(known) | Q(callback_data__startswith="out:"))
        .annotate(known=known)
        .values_list(*_LOG_COLUMNS, "known")[: limit * 4]
    )
    lost = {i for c in candidates if not c[-1] and (i := callback_row_id(c[4])) is not None}
    waiting: set[int] = set()
    for id_chunk in _chunks(sorted(lost)):
        waiting.update(
            OutboundMessage.objects.filter(
                pk__in=id_chunk, wamid__isnull=True, status__in=(S.SENDING, S.UNKNOWN)
            ).values_list("pk", flat=True)
        )
    chosen = [c[:-1] for c in candidates if c[-1] or callback_row_id(c[4]) in waiting]
    return chosen[:limit]


def lock_rows(columns: Sequence[str], wamids: Sequence[str], ids: Sequence[int]) -> list[Any]:
    """Queue rows with these wamids or ids, in id order, as tuples of `columns`."""
    rows: dict[int, Any] = {}
    queryset = OutboundMessage.objects.order_by("id").select_for_update()
    for chunk in _chunks(list(wamids)):
        rows.update((r[0], r) for r in queryset.filter(wamid__in=chunk).values_list(*columns))
    for id_chunk in _chunks(list(ids)):
        rows.update((r[0], r) for r in queryset.filter(pk__in=id_chunk).values_list(*columns))
    return [rows[k] for k in sorted(rows)]


def write(
    changed: list[dict[str, Any]], links: list[tuple[int, int]], wa_ids: dict[int, str]
) -> None:
    """The queue rows' new values, log rows linked to queue rows, contacts' WhatsApp ids."""
    if changed:
        columns = [c for c in changed[0] if c != "id"]
        OutboundMessage.objects.bulk_update(
            [OutboundMessage(**values) for values in changed], columns, batch_size=_IN_CHUNK
        )
    if links:
        StatusLog.objects.bulk_update(
            [StatusLog(id=log_id, outbound_id=row_id) for log_id, row_id in links],
            ["outbound"],
            batch_size=_IN_CHUNK,
        )
    for contact_id, wa_id in wa_ids.items():
        Contact.objects.filter(pk=contact_id).exclude(wa_id=wa_id).update(wa_id=wa_id)

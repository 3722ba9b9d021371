"""Statuses logged once and matched to their queue rows, by wamid or callback data."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import connection, transaction

from campaigns.models import Campaign
from messaging.models import OutboundStatus
from messaging.sql_paths import postgres_fast_paths
from webhooks.payload import StatusEvent
from webhooks.statuses import portable
from webhooks.statuses.ladder import (
    _LOG,
    _OUT,
    _ROW_COLUMNS,
    LogRow,
    Outcome,
    Row,
    _json,
    _step,
    _write,
)

logger = logging.getLogger(__name__)
S = OutboundStatus

# Apply in this order within a batch, failed last: a failed never undoes a delivered.
ORDER = {"sent": 0, "delivered": 1, "read": 2, "failed": 3}
CALLBACK_PREFIX = "out:"


def callback_row_id(callback_data: str) -> int | None:
    """Our queue row id from `biz_opaque_callback_data` ("out:<id>"), if it is one."""
    if callback_data.startswith(CALLBACK_PREFIX):
        digits = callback_data[len(CALLBACK_PREFIX) :]
        if digits.isdigit() and len(digits) <= 18:
            return int(digits)
    return None


@transaction.atomic
def record_statuses(*, events: Sequence[StatusEvent]) -> Outcome:
    """Log every new (wamid, status) and apply it to its queue row and campaign counters."""
    unique: dict[tuple[str, str], StatusEvent] = {}
    for event in events:
        unique.setdefault((event.wamid, event.status), event)
    if not unique:
        return Outcome()
    candidates = [
        LogRow(
            0,
            e.wamid,
            e.status,
            e.timestamp,
            e.callback_data,
            e.recipient_id,
            e.error_code,
            e.error_title,
        )
        for e in sorted(unique.values(), key=lambda e: (e.wamid, e.status))
    ]
    # Queue rows first (id order), log keys second (sorted): every applier takes locks in the
    # same order, so concurrent appliers queue behind each other and never deadlock.
    rows = _lock_rows(candidates)
    matched = {(log.wamid, log.status): row.id for log, row in _match(candidates, rows)}
    inserted = _insert_logs(
        [
            {
                "wamid": c.wamid,
                "status": c.status,
                "timestamp": c.timestamp,
                "callback_data": c.callback_data,
                "recipient_id": c.recipient_id,
                "error_code": c.error_code,
                "error_title": c.error_title,
                "outbound_id": matched.get((c.wamid, c.status)),
            }
            for c in candidates
        ]
    )
    by_key = {(c.wamid, c.status): c for c in candidates}
    logs = []
    for log_id, wamid, status in inserted:
        log = by_key[(wamid, status)]
        log.id = log_id
        logs.append(log)
    outcome = _apply(logs, rows, link=False)
    outcome.logged = len(logs)
    return outcome


def _insert_logs(rows: list[dict[str, object]]) -> list[tuple[int, str, str]]:
    """Log the pairs nobody logged before; (id, wamid, status) of those this call inserted."""
    if not postgres_fast_paths():
        return portable.insert_logs(rows)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_LOG} (wamid, status, timestamp, callback_data, recipient_id, "  # noqa: S608
            "error_code, error_title, outbound_id, received_at) "
            "SELECT v.*, now() FROM json_to_recordset(%s::json) AS v(wamid text, status text, "
            "timestamp timestamptz, callback_data text, recipient_id text, error_code integer, "
            "error_title text, outbound_id bigint) "
            "ON CONFLICT (wamid, status) DO NOTHING RETURNING id, wamid, status",
            [_json(rows)],
        )
        return cursor.fetchall()


@transaction.atomic
def match_pending_statuses(*, wamids: Iterable[str]) -> int:
    """Apply statuses that arrived before their queue row knew its wamid. Returns how many.

    The sender calls this after it records wamids; the drain loop calls
    `match_unmatched_statuses` for the rest (callback data, lost calls).
    """
    wamids = sorted(set(wamids))
    if not wamids:
        return 0
    if not postgres_fast_paths():
        logs = [LogRow(*r) for r in portable.lock_logs(wamids=wamids, limit=10_000)]
    else:
        logs = _lock_logs("l.wamid = ANY(%s)", [wamids])
    return _settle(logs).matched


@transaction.atomic
def match_unmatched_statuses(*, since: datetime, limit: int = 500) -> int:
    """Unmatched log rows (since `since`) whose queue row is now known by wamid or callback."""
    if not postgres_fast_paths():
        logs = [LogRow(*r) for r in portable.lock_logs(since=since, limit=limit)]
        return _settle(logs).matched
    logs = _lock_logs(
        "l.received_at >= %s AND (EXISTS (SELECT 1 FROM " + _OUT + " o WHERE o.wamid = l.wamid) "  # noqa: S608
        "OR EXISTS (SELECT 1 FROM " + _OUT + " o WHERE o.wamid IS NULL AND o.status IN (%s, %s) "
        "AND l.callback_data ~ '^out:[0-9]{1,18}$' AND o.id = substr(l.callback_data, 5)::bigint))",
        [since, S.SENDING, S.UNKNOWN],
        limit=limit,
    )
    return _settle(logs).matched


def _lock_logs(where: str, params: list[Any], limit: int = 10_000) -> list[LogRow]:
    with connection.cursor() as cursor:
        # SKIP LOCKED: a log row another applier holds is being matched by it right now.
        cursor.execute(
            "SELECT l.id, l.wamid, l.status, l.timestamp, l.callback_data, l.recipient_id, "  # noqa: S608
            f"l.error_code, l.error_title FROM {_LOG} l WHERE l.outbound_id IS NULL AND {where} "
            "ORDER BY l.id LIMIT %s FOR UPDATE OF l SKIP LOCKED",
            [*params, limit],
        )
        return [LogRow(*r) for r in cursor.fetchall()]


def _lock_rows(logs: list[LogRow]) -> dict[int, Row]:
    wamids = sorted({log.wamid for log in logs})
    ids = sorted({i for log in logs if (i := callback_row_id(log.callback_data)) is not None})
    if not postgres_fast_paths():
        return {r[0]: Row(*r) for r in portable.lock_rows(_ROW_COLUMNS, wamids, ids)}
    with connection.cursor() as cursor:
        # Id order: concurrent appliers (and the sender) lock in the same order.
        cursor.execute(
            f"SELECT {', '.join(_ROW_COLUMNS)} FROM {_OUT} "  # noqa: S608
            "WHERE wamid = ANY(%s) OR id = ANY(%s) ORDER BY id FOR UPDATE",
            [wamids, ids],
        )
        return {r[0]: Row(*r) for r in cursor.fetchall()}


def _match(logs: list[LogRow], rows: dict[int, Row]) -> list[tuple[LogRow, Row]]:
    """Each log's queue row: by wamid, else by callback data for a row whose answer was lost."""
    by_wamid = {r.wamid: r for r in rows.values() if r.wamid}
    pairs = []
    for log in logs:
        row = by_wamid.get(log.wamid)
        if row is None:
            candidate = rows.get(callback_row_id(log.callback_data) or -1)
            # The send answer was lost: this status tells us the wamid and that it was accepted.
            if candidate and candidate.wamid is None and candidate.status in (S.SENDING, S.UNKNOWN):
                row = candidate
                row.wamid = log.wamid
                row.changed = True
                by_wamid[log.wamid] = row
        if row is not None:
            pairs.append((log, row))
    return pairs


def _settle(logs: list[LogRow]) -> Outcome:
    """Apply log rows that exist already (locked, unmatched until now), linking them."""
    return _apply(logs, _lock_rows(logs), link=True) if logs else Outcome()


def _apply(logs: list[LogRow], rows: dict[int, Row], *, link: bool) -> Outcome:
    outcome = Outcome()
    pairs = _match(sorted(logs, key=lambda g: (ORDER.get(g.status, 9), g.id)), rows)
    valid_until: dict[int, datetime | None] = {}
    if any(log.status == "failed" for log, _ in pairs):
        valid_until = dict(
            Campaign.objects.filter(pk__in={r.campaign_id for _, r in pairs}).values_list(
                "pk", "valid_until"
            )
        )
    for log, row in pairs:
        if log.recipient_id and "+" + log.recipient_id != row.phone:
            outcome.wa_ids[row.contact_id] = log.recipient_id
        _step(row, log, outcome, valid_until)
    outcome.matched = len(pairs)
    _write(rows, [(log.id, row.id) for log, row in pairs] if link else [], outcome)
    return outcome

"""Message statuses: log each (wamid, status) once, move queue rows up the ladder, count.

Exactly-once comes from the status log: a status is applied in the transaction that inserts
its log row (`ON CONFLICT DO NOTHING … RETURNING` yields only rows nobody inserted before), or
in the one that links an unmatched log row to its queue row. Queue rows are locked in id order
and their moves computed here from the locked values, so the counter increments are the moves
that really happened, whatever the order, duplicates or concurrent appliers.
"""

from __future__ import annotations

from webhooks.statuses.ladder import LADDER, MOVABLE, LogRow, Outcome, Row
from webhooks.statuses.matching import (
    CALLBACK_PREFIX,
    ORDER,
    callback_row_id,
    match_pending_statuses,
    match_unmatched_statuses,
    record_statuses,
)

__all__ = [
    "CALLBACK_PREFIX",
    "LADDER",
    "MOVABLE",
    "ORDER",
    "LogRow",
    "Outcome",
    "Row",
    "callback_row_id",
    "match_pending_statuses",
    "match_unmatched_statuses",
    "record_statuses",
]

"""Campaign creation from a CSV: contacts upserted, queue rows written in send order, one
transaction.

On PostgreSQL the rows stream through COPY into a temporary table and set-based SQL does the
rest (duplicates, suppression, contact upsert, interleaved queue insert, rendering); elsewhere
(the SQLite quickstart) batches of `bulk_create` do the same. Either way a failure anywhere
leaves nothing behind.
"""

from __future__ import annotations

from campaigns.csv_import import CsvImportError
from messaging.campaign_import.job import ImportResult, PreviewMessage, RejectionRow
from messaging.campaign_import.service import create_campaign_from_csv, preview_csv

__all__ = [
    "CsvImportError",
    "ImportResult",
    "PreviewMessage",
    "RejectionRow",
    "create_campaign_from_csv",
    "preview_csv",
]

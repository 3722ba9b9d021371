"""Campaign creation from an audience (a CSV, rows handed in by code, or contacts selected in
the database): contacts upserted, queue rows written in send order, one transaction.

On PostgreSQL a CSV's rows stream through COPY into a temporary table (a database audience is
copied there by one INSERT … SELECT) and set-based SQL does the
rest (duplicates, suppression, contact upsert, interleaved queue insert, rendering); elsewhere
(the SQLite quickstart) batches of `bulk_create` do the same. Either way a failure anywhere
leaves nothing behind.
"""

from __future__ import annotations

from campaigns.csv_import import CsvImportError
from messaging.campaign_import.audience import (
    Audience,
    ContactsAudience,
    CsvAudience,
    RowsAudience,
)
from messaging.campaign_import.job import ImportResult, PreviewMessage, RejectionRow
from messaging.campaign_import.service import (
    create_campaign,
    create_campaign_from_csv,
    preview,
    preview_csv,
)

__all__ = [
    "Audience",
    "ContactsAudience",
    "CsvAudience",
    "CsvImportError",
    "ImportResult",
    "PreviewMessage",
    "RejectionRow",
    "RowsAudience",
    "create_campaign",
    "create_campaign_from_csv",
    "preview",
    "preview_csv",
]

"""The default region of an import; the normalisation itself is `campaigns.e164`'s."""

from __future__ import annotations

import phonenumbers

from campaigns.csv_import.errors import CsvImportError
from campaigns.e164 import normalise_phone, recipient_phone, recipient_phones

__all__ = ["check_region", "normalise_phone", "recipient_phone", "recipient_phones"]


def check_region(region: str) -> str:
    region = (region or "").strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise CsvImportError(f"unknown default region {region!r}: use a two-letter country code")
    return region

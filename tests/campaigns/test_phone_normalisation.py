"""E.164 normalisation: one valid form per number, and a reason for every refusal."""

from __future__ import annotations

import pytest

from campaigns.csv_import import CsvImportError, check_region, normalise_phone


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(415) 555-2671", "US", "+14155552671"),
        ("+1 415 555 2671", "GB", "+14155552671"),
        ("011 44 7911 123456", "US", "+447911123456"),  # US international prefix
        ("07911 123456", "GB", "+447911123456"),  # UK trunk 0 dropped
        ("0044 7911 123456", "US", "+447911123456"),  # 00 prefix, whatever the region
        ("0113 496 0000", "GB", "+441134960000"),  # a UK 011 area code stays national
        ("(11) 98765-4321", "BR", "+5511987654321"),
        ("+55 11 98765-4321", "US", "+5511987654321"),
        ("098765 43210", "IN", "+919876543210"),
        ("+91 98765 43210", "US", "+919876543210"),
        ("0151 23456789", "DE", "+4915123456789"),
        ("0049 151 23456789", "DE", "+4915123456789"),
        ("\u200e+1\u00a0415\u2011555\u20112671\u200f", "US", "+14155552671"),  # invisibles
        ("447911123456", "US", "+447911123456"),  # international without the +
        ("5511987654321", "US", "+5511987654321"),  # a wa_id
    ],
)
def test_valid_numbers_become_e164(raw, region, expected):
    assert normalise_phone(raw, region) == (expected, "")


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("", "US", "no phone number"),
        ("n/a", "US", "not a phone number"),
        ("415-555-CALL", "US", "contains characters other than digits"),
        ("12345", "US", "too short for US"),
        ("+999 1234 5678", "US", "unknown country code"),
        ("+44 7911 12345678", "US", "too long for GB"),
        ("+1 555 555 5555", "US", "not a valid US number"),
        ("0151 2345", "DE", "not a valid DE number"),
    ],
)
def test_invalid_numbers_get_a_reason(raw, region, reason):
    phone, why = normalise_phone(raw, region)
    assert phone is None
    assert why == reason


def test_unknown_region_is_refused():
    with pytest.raises(CsvImportError, match="unknown default region 'XX'"):
        check_region("XX")
    assert check_region(" gb ") == "GB"

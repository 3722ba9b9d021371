"""E.164 normalisation of audience numbers, with the reason for every number refused.

Pure (phonenumbers only, no Django and no `campaigns.csv_import` import), so the import's
phone worker processes (`messaging/campaign_import/phone_pool.py`) load only this module."""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import (
    NumberParseException,
    PhoneNumberFormat,
    PhoneNumberType,
    ValidationResult,
    phonenumberutil,
)

from campaigns import e164_fast

# What spreadsheets and copy-paste put into numbers besides digits.
_PHONE_JUNK = str.maketrans(
    dict.fromkeys(
        " \t-.()/\u00a0\u2007\u202f\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d"
        "\u202e\u2060\ufeff\u2010\u2011\u2012\u2013\u2014\u2212'\"",
    )
)
_POSSIBLE_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "wrong number of digits",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "a local number without its area code",
}


# Valid numbers no WhatsApp user has: a send to one can only fail (or cost the caller).
_NOT_RECIPIENTS = {
    PhoneNumberType.PREMIUM_RATE: "a premium-rate number, which WhatsApp cannot message",
    PhoneNumberType.TOLL_FREE: "a toll-free number, which WhatsApp cannot message",
}


def normalise_phone(raw: str, region: str) -> tuple[str | None, str]:
    """(E.164, "") for a valid number, else (None, reason)."""
    cleaned, reason = _clean(raw)
    if reason:
        return None, reason
    number, reason = _parsed(cleaned, region)
    if number is None:
        return None, reason
    return phonenumbers.format_number(number, PhoneNumberFormat.E164), ""


def recipient_phone(raw: str, region: str) -> tuple[str | None, str]:
    """`normalise_phone` for a number we would message: premium-rate and toll-free numbers
    are refused too, with the reason (every audience row goes through here).

    The common shapes of a valid number are decided by `e164_fast` (≈ 5 × cheaper, the same
    answers); everything else, and every refusal but premium/toll-free, by phonenumbers."""
    cleaned, reason = _clean(raw)
    if reason:
        return None, reason
    if e164_fast.ENABLED and (fast := e164_fast.lookup(cleaned, region)) is not None:
        e164, refused = fast
        if refused is not None:
            return None, _NOT_RECIPIENTS[refused]
        return e164, ""
    return _library_recipient(cleaned, region)


def library_recipient_phone(raw: str, region: str) -> tuple[str | None, str]:
    """`recipient_phone` decided by phonenumbers alone: the reference `e164_fast` is tested
    against."""
    cleaned, reason = _clean(raw)
    if reason:
        return None, reason
    return _library_recipient(cleaned, region)


def _library_recipient(cleaned: str, region: str) -> tuple[str | None, str]:
    number, reason = _parsed(cleaned, region)
    if number is None:
        return None, reason
    refused = _premium_or_toll_free(number)
    if refused is not None:
        return None, _NOT_RECIPIENTS[refused]
    return phonenumbers.format_number(number, PhoneNumberFormat.E164), ""


_matches = getattr(phonenumberutil, "_is_number_matching_desc", None)


_type_of = getattr(phonenumberutil, "_number_type_helper", None)


def is_valid(number: phonenumbers.PhoneNumber) -> bool:
    """`phonenumbers.is_valid_number`, with its number-type match done once instead of twice.

    For a calling code shared by several regions (NANPA's +1, +7, +44…) `is_valid_number`
    first finds the region by matching the number's type against each region in turn, then
    matches the type again for the region found. A region found by that first match is valid
    by the same test, so the second match is skipped (≈ 3.5 µs of ≈ 22 µs a +1 number). A
    region chosen by its leading digits, or a calling code of one region, goes through the
    library's own check (tests/campaigns/test_phone_validity.py compares both on the library's
    example numbers of every region)."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(number.country_code or 0)
    if _type_of is None or regions is None or len(regions) == 1:
        return phonenumbers.is_valid_number(number)
    national = phonenumbers.national_significant_number(number)
    for region in regions:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region, None)
        if metadata is None:
            continue
        if metadata.leading_digits is not None:
            if re.match(metadata.leading_digits, national):
                return phonenumbers.is_valid_number_for_region(number, region)
        elif _type_of(national, metadata) != PhoneNumberType.UNKNOWN:
            return True
    return False


def _premium_or_toll_free(number: phonenumbers.PhoneNumber) -> int | None:
    """PREMIUM_RATE, TOLL_FREE or None. Only those two patterns of the country's main region
    are matched (shared across regions of one calling code, e.g. NANPA's 8xx and 900): a
    third of `number_type`'s cost, which tries every type; it runs for every imported row."""
    if _matches is None:  # phonenumbers changed its internals: the slower public call
        kind = phonenumbers.number_type(number)
        return kind if kind in _NOT_RECIPIENTS else None
    country_code = number.country_code
    if country_code is None:  # never for a parsed number; the type allows it
        return None
    region = phonenumbers.region_code_for_country_code(country_code)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None:
        return None
    national = phonenumbers.national_significant_number(number)
    if _matches(national, metadata.premium_rate):
        return PhoneNumberType.PREMIUM_RATE
    if _matches(national, metadata.toll_free):
        return PhoneNumberType.TOLL_FREE
    return None


def _clean(raw: str) -> tuple[str, str]:
    """(ASCII digits after at most one `+`, "") or ("", why the text is not a number).

    `00` is an international prefix everywhere numbers are written without one; `011` and the
    national trunk 0 are the region's business, which libphonenumber knows."""
    cleaned = raw.translate(_PHONE_JUNK)
    if not cleaned:
        return "", "no phone number"
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    digits = cleaned[1:] if cleaned.startswith("+") else cleaned
    if not digits.isdigit() or not digits.isascii():
        if not any(c.isdigit() for c in digits):
            return "", "not a phone number"
        return "", "contains characters other than digits"
    return cleaned, ""


def _parsed(cleaned: str, region: str) -> tuple[phonenumbers.PhoneNumber | None, str]:
    """The parsed valid number of `_clean`'s output, else (None, reason).

    Digits that are not valid for the region are tried once more as an international number
    without its `+` (wa_id/msisdn exports write them that way).
    """
    try:
        number = phonenumbers.parse(cleaned, region)
    except NumberParseException as exc:
        return None, _parse_reason(exc)
    if is_valid(number):
        return number, ""
    if cleaned[0] != "+" and len(cleaned) > 8:
        try:
            intl = phonenumbers.parse("+" + cleaned, None)
        except NumberParseException:
            intl = None
        if intl is not None and is_valid(intl):
            return intl, ""
    return None, _invalid_reason(number)


def _parse_reason(exc: NumberParseException) -> str:
    if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
        return "unknown country code"
    if exc.error_type in (
        NumberParseException.TOO_SHORT_NSN,
        NumberParseException.TOO_SHORT_AFTER_IDD,
    ):
        return "too short"
    if exc.error_type == NumberParseException.TOO_LONG:
        return "too long"
    return "not a phone number"


def _invalid_reason(number: phonenumbers.PhoneNumber) -> str:
    country = phonenumbers.region_code_for_country_code(number.country_code or 0)
    where = f"+{number.country_code}" if country in ("ZZ", "001") else country
    result = phonenumbers.is_possible_number_with_reason(number)
    if result == ValidationResult.INVALID_COUNTRY_CODE:
        return f"unknown country code +{number.country_code}"
    if result in _POSSIBLE_REASONS:
        return f"{_POSSIBLE_REASONS[result]} for {where}"
    return f"not a valid {where} number"


def recipient_phones(raws: list[str], region: str) -> list[tuple[str | None, str]]:
    """`recipient_phone` of each (already stripped) number: the unit of work of a phone
    worker process, one block of rows at a time."""
    return [recipient_phone(raw, region) for raw in raws]

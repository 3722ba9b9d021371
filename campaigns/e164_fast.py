"""A fast path for `campaigns.e164`: the common shapes of a valid number, decided exactly as
phonenumbers decides them, from the library's own metadata with its patterns compiled once.

`phonenumbers.parse` + `is_valid_number` cost ≈ 15–20 µs a number in pure Python, most of
it generic work (extension and RFC 3966 scans, alpha conversion, a regex cache lookup per
pattern). For a string that is only ASCII digits, with or without one leading `+`, the
library's parse reduces to: the country code (the `+` form) or the default region's (the
national form), and the digits after it as the national number, unless one of its special
cases applies: an international or national prefix to strip, the region's own calling code
written without `+`, a leading zero, an unknown or non-geographic calling code, odd lengths.
`lookup` answers only when none of these applies and the number is valid; it returns None
for everything else, which then goes through the library as before. So it never changes an
answer, it only skips work; tests/campaigns/test_phone_fast_path.py compares it with the
library over generated numbers of every region, their near misses and malformed inputs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType, phonenumberutil

# The national number lengths the library accepts (its _MIN/_MAX_LENGTH_FOR_NSN); the fast
# path stays well inside them, so none of parse's length exceptions can apply.
_MIN_DIGITS = 4
_MIN_LENGTH = 2
_MAX_NATIONAL = 17
# Country codes are 1–3 digits (the library's _MAX_LENGTH_COUNTRY_CODE).
_MAX_COUNTRY_CODE = 3

# The library internals whose behaviour this module repeats; if a release renames them, the
# fast path switches itself off rather than guess.
ENABLED = all(
    hasattr(phonenumberutil, name)
    for name in ("_is_number_matching_desc", "_number_type_helper", "_extract_country_code")
)

# A PhoneNumberDesc as `_matches` reads it: its possible lengths (None: any) and pattern.
_Desc = tuple[frozenset[int] | None, Callable[[str], Any] | None]


def _desc(desc: Any) -> _Desc | None:
    """`_is_number_matching_desc`'s inputs, prepared: None never matches."""
    if desc is None:
        return None
    lengths = frozenset(desc.possible_length) if len(desc.possible_length) > 0 else None
    pattern = desc.national_number_pattern
    return lengths, (re.compile(pattern).fullmatch if pattern else None)


def _matches(national: str, desc: _Desc | None) -> bool:
    """`phonenumberutil._is_number_matching_desc` with the pattern compiled once."""
    if desc is None:
        return False
    lengths, fullmatch = desc
    if lengths is not None and len(national) not in lengths:
        return False
    return fullmatch is not None and fullmatch(national) is not None


class _Region:
    """What `_number_type_helper` reads of one region's metadata, compiled."""

    def __init__(self, metadata: PhoneMetadata) -> None:
        self.general = _desc(metadata.general_desc)
        kinds = [
            metadata.premium_rate,
            metadata.toll_free,
            metadata.shared_cost,
            metadata.voip,
            metadata.personal_number,
            metadata.pager,
            metadata.uan,
            metadata.voicemail,
            metadata.fixed_line,
        ]
        # The library tries the mobile pattern only when it differs from the fixed line's.
        if not metadata.same_mobile_and_fixed_line_pattern:
            kinds.append(metadata.mobile)
        # Valid = the general desc matches and so does any type's. One alternation of the type
        # patterns a national number of each length could match, so a number costs two
        # regex calls instead of up to ten `_is_number_matching_desc`.
        self.types: dict[int, Callable[[str], Any]] = {}
        for length in range(_MIN_LENGTH, _MAX_NATIONAL + 1):
            patterns = [
                kind.national_number_pattern
                for kind in kinds
                if kind is not None
                and kind.national_number_pattern
                and (len(kind.possible_length) == 0 or length in kind.possible_length)
            ]
            if patterns:
                self.types[length] = re.compile("|".join(f"(?:{p})" for p in patterns)).fullmatch
        self.premium_rate = _desc(metadata.premium_rate)
        self.toll_free = _desc(metadata.toll_free)
        leading = metadata.leading_digits
        self.leading_digits = re.compile(leading).match if leading is not None else None
        # Parsing: a national number matching these prefixes goes to the library.
        idd = metadata.international_prefix
        self.idd = re.compile(idd).match if idd is not None else None
        npfp = metadata.national_prefix_for_parsing
        self.national_prefix = re.compile(npfp).match if npfp else None
        self.country_code: int = metadata.country_code or 0

    def has_type(self, national: str) -> bool:
        """`_number_type_helper(national, metadata) != UNKNOWN`."""
        if not _matches(national, self.general):
            return False
        types = self.types.get(len(national))
        return types is not None and types(national) is not None


class _CallingCode:
    """The regions of one calling code, in the library's order, and its main region."""

    def __init__(self, country_code: int, regions: tuple[str, ...]) -> None:
        self.regions: list[tuple[Callable[[str], Any] | None, _Region]] = []
        if len(regions) == 1:
            # is_valid_number takes a calling code's only region without its leading digits.
            main = PhoneMetadata.metadata_for_region(regions[0], None)
            self.main = _Region(main) if main is not None else None
            if self.main is not None:
                self.regions.append((None, self.main))
            return
        for region in regions:
            metadata = PhoneMetadata.metadata_for_region(region, None)
            if metadata is not None:
                compiled = _Region(metadata)
                self.regions.append((compiled.leading_digits, compiled))
        main_region = phonenumbers.region_code_for_country_code(country_code)
        main_md = PhoneMetadata.metadata_for_region(main_region, None)
        self.main = _Region(main_md) if main_md is not None else None

    def valid(self, national: str) -> bool:
        """`campaigns.e164.is_valid` (= `is_valid_number`) of +<code><national>."""
        for leading, region in self.regions:
            if leading is not None:
                if leading(national):
                    return region.has_type(national)
            elif region.has_type(national):
                return True
        return False

    def refusal(self, national: str) -> int | None:
        """`campaigns.e164._premium_or_toll_free`: the main region's two patterns."""
        if self.main is None:
            return None
        if _matches(national, self.main.premium_rate):
            return PhoneNumberType.PREMIUM_RATE
        if _matches(national, self.main.toll_free):
            return PhoneNumberType.TOLL_FREE
        return None


_CODES: dict[int, _CallingCode | None] = {}
_REGIONS: dict[str, _Region | None] = {}


def _calling_code(country_code: int) -> _CallingCode | None:
    try:
        return _CODES[country_code]
    except KeyError:
        pass
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code)
    found = None
    if regions and "001" not in regions:  # non-geographic numbers: the library decides
        found = _CallingCode(country_code, tuple(regions))
        if found.main is None or not found.regions:
            found = None
    _CODES[country_code] = found
    return found


def _default_region(region: str) -> _Region | None:
    try:
        return _REGIONS[region]
    except KeyError:
        pass
    metadata = PhoneMetadata.metadata_for_region(region, None)
    found = _Region(metadata) if metadata is not None else None
    _REGIONS[region] = found
    return found


def lookup(cleaned: str, region: str) -> tuple[str, int | None] | None:
    """(E.164, PREMIUM_RATE / TOLL_FREE / None) of a valid number written as `cleaned`
    (ASCII digits, optionally after one `+`, junk already removed), or None when the library
    has to decide: an invalid number, or a shape this path does not handle."""
    if cleaned[0] == "+":
        digits = cleaned[1:]
        if len(digits) < _MIN_DIGITS or digits[0] == "0":
            return None
        # phonenumberutil._extract_country_code: the shortest known prefix.
        for width in range(1, _MAX_COUNTRY_CODE + 1):
            country_code = int(digits[:width])
            if country_code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                break
        else:
            return None
        national = digits[width:]
        code = _calling_code(country_code)
        if code is None:
            return None
        # parse() strips a national prefix with the main region's rule: not here.
        parsing = code.main
    else:
        parsing = _default_region(region)
        if parsing is None or len(cleaned) < _MIN_DIGITS:
            return None
        # An international prefix (011, 00…) or the region's own calling code in front:
        # parse() may read a country code there, so the library decides.
        if parsing.idd is not None and parsing.idd(cleaned):
            return None
        country_code = parsing.country_code
        if cleaned.startswith(str(country_code)):
            return None
        code = _calling_code(country_code)
        if code is None:
            return None
        national = cleaned
    assert parsing is not None
    if not 1 < len(national) <= _MAX_NATIONAL or national[0] == "0":
        return None  # lengths parse() refuses; an Italian leading zero
    if parsing.national_prefix is not None and parsing.national_prefix(national):
        return None
    if not code.valid(national):
        return None
    return f"+{country_code}{national}", code.refusal(national)

"""The time zones libphonenumber gives an E.164 number, without its parse.

The claim's screen asks for the zones of every row it judges, in the sender's process, where
each microsecond of Python keeps the pacer thread from the GIL: `parse` and `number_type`
cost about 20 µs a number (a claim of 1,400 rows stalled the pacer by ~30 ms). The answer
of `time_zones_for_number(parse(phone, None))` depends on the number only through its
calling code, its digits and whether its type is unknown, geographical or not, so
`zone_names` reads a canonical E.164 string directly (the calling code by the same
prefix-free lookup as `parse`) and, per calling code, matches only the patterns that can
change the answer: none but validity when the number's prefix maps to the country's own zone
set. Whatever the shortcut cannot read as `parse` would (a national prefix, an Italian
leading zero, a calling code of several regions, the library's internals changed) goes
through the library itself. tests/policy/test_phone_zones.py compares the two on numbers of
every calling code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Literal

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumber, PhoneNumberDesc, PhoneNumberType
from phonenumbers import timezone as phone_timezones

try:
    from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX
except ImportError:  # pragma: no cover - the library's layout changed: the library answers
    TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX = {}, 0

_E164 = re.compile(r"\+([1-9][0-9]{2,17})")
_UNKNOWN: tuple[str, ...] = (phone_timezones.UNKNOWN_TIMEZONE,)
_MIN_NSN, _MAX_NSN = 2, 17  # parse refuses national numbers shorter or longer


def library_zone_names(phone: str) -> tuple[str, ...]:
    """libphonenumber's own answer: the zones of `parse(phone, None)`, () if it does not parse."""
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return ()
    return tuple(phone_timezones.time_zones_for_number(number))


@dataclass(frozen=True)
class _Desc:
    """A PhoneNumberDesc as `_is_number_matching_desc` reads it: lengths first, then the
    whole national number against the pattern."""

    lengths: frozenset[int]
    pattern: re.Pattern[str] | None

    @classmethod
    def of(cls, desc: PhoneNumberDesc | None) -> _Desc:
        if desc is None or not desc.national_number_pattern:
            return cls(frozenset(), None)
        return cls(frozenset(desc.possible_length or ()), re.compile(desc.national_number_pattern))

    def matches(self, national: str) -> bool:
        if self.pattern is None:
            return False
        if self.lengths and len(national) not in self.lengths:
            return False
        return self.pattern.fullmatch(national) is not None


@dataclass(frozen=True)
class _Country:
    """What decides the zones of the numbers of one calling code (one region only)."""

    country_zones: tuple[str, ...]  # a number whose type is not geographical
    prefix_lengths: tuple[int, ...]  # of the zone table's keys a number could start with
    general: _Desc
    not_geographical: tuple[_Desc, ...]  # premium rate … voicemail
    fixed_line: _Desc
    mobile: _Desc
    mobile_checked: bool  # False: the mobile pattern is the fixed line's (never tried alone)
    mobile_geographical: bool

    def zones(self, digits: str, national: str) -> tuple[str, ...]:
        if not self.general.matches(national):
            return _UNKNOWN
        geographical = self.prefix_zones(digits)
        if geographical == self.country_zones:  # the type cannot change the answer
            valid = (
                self.mobile.matches(national)
                or self.fixed_line.matches(national)
                or any(d.matches(national) for d in self.not_geographical)
            )
            return self.country_zones if valid else _UNKNOWN
        # The order of phonenumbers' _number_type_helper: the first type that matches.
        if any(d.matches(national) for d in self.not_geographical):
            return self.country_zones
        if self.fixed_line.matches(national):
            return geographical
        if self.mobile_checked and self.mobile.matches(national):
            return geographical if self.mobile_geographical else self.country_zones
        return _UNKNOWN

    def prefix_zones(self, digits: str) -> tuple[str, ...]:
        for length in self.prefix_lengths:
            found = TIMEZONE_DATA.get(digits[:length])
            if found is not None:
                return tuple(found)
        return _UNKNOWN


_NOT_GEOGRAPHICAL = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
)


@cache
def _country(calling_code: int) -> _Country | None:
    """None: this calling code's numbers go through the library (several regions share it,
    or its metadata is missing)."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(calling_code, ())
    if len(regions) != 1 or not TIMEZONE_DATA:
        return None
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(calling_code, regions[0])
    if metadata is None or metadata.general_desc is None:
        return None
    code = str(calling_code)
    # The library's country-level lookup: the longest key the calling code starts with.
    country = next(
        (
            tuple(TIMEZONE_DATA[code[:n]])
            for n in range(TIMEZONE_LONGEST_PREFIX + 1, 1, -1)
            if code[:n] in TIMEZONE_DATA
        ),
        _UNKNOWN,
    )
    # Keys a number of this code can start with: its own, and any the code itself starts with.
    lengths = {len(k) for k in TIMEZONE_DATA if k.startswith(code) or code.startswith(k)}
    return _Country(
        country_zones=country,
        prefix_lengths=tuple(
            sorted((n for n in lengths if n <= TIMEZONE_LONGEST_PREFIX), reverse=True)
        ),
        general=_Desc.of(metadata.general_desc),
        not_geographical=tuple(_Desc.of(getattr(metadata, n)) for n in _NOT_GEOGRAPHICAL),
        fixed_line=_Desc.of(metadata.fixed_line),
        mobile=_Desc.of(metadata.mobile),
        mobile_checked=not metadata.same_mobile_and_fixed_line_pattern,
        mobile_geographical=phonenumbers.is_number_type_geographical(
            PhoneNumberType.MOBILE, calling_code
        ),
    )


def zone_names(phone: str) -> tuple[str, ...]:
    """Exactly `library_zone_names(phone)`: the IANA names libphonenumber gives the number
    ("Etc/Unknown" for an invalid one, () for one that does not parse)."""
    match = _E164.fullmatch(phone)
    if match is None:
        return library_zone_names(phone)
    digits = match.group(1)
    for length in (1, 2, 3):  # calling codes are prefix-free: parse takes the first found
        calling_code = int(digits[:length])
        if calling_code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return library_zone_names(phone)
    national = digits[length:]
    if not _parses_plainly(calling_code, national):
        return library_zone_names(phone)
    country = _country(calling_code)
    if country is None:  # several regions: the library finds the region, but skip the parse
        number = PhoneNumber(country_code=calling_code, national_number=int(national))
        return tuple(phone_timezones.time_zones_for_number(number))
    return country.zones(digits, national)


def _parses_plainly(calling_code: int, national: str) -> bool:
    """Whether parse reads "+<code><national>" as that code and that very national number:
    a length it accepts, no Italian leading zero (kept apart) and nothing the main region's
    national prefix pattern could strip."""
    if not _MIN_NSN <= len(national) <= _MAX_NSN or national[0] == "0":
        return False
    prefix = _national_prefix(calling_code)
    if prefix is False:
        return False
    return prefix is None or not prefix.match(national)


@cache
def _national_prefix(calling_code: int) -> re.Pattern[str] | Literal[False] | None:
    """The main region's national prefix pattern (None: it has none; False: no metadata)."""
    region = phonenumbers.region_code_for_country_code(calling_code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(calling_code, region)
    if metadata is None:
        return False
    prefix = metadata.national_prefix_for_parsing
    return re.compile(prefix) if prefix else None

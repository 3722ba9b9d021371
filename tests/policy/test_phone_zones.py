"""messaging.policy.phone_zones.zone_names gives what libphonenumber's parse and
time_zones_for_number give, for numbers of every calling code (valid, invalid, odd lengths)."""

from __future__ import annotations

import random
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from messaging.policy.phone_zones import library_zone_names, zone_names
from messaging.policy.windows import zones_for, zones_for_phone

TYPES = [
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER,
    PhoneNumberType.UAN,
    PhoneNumberType.VOICEMAIL,
]
# Calling codes whose numbers map to several zone sets (by prefix, or by type).
BIG = [1, 7, 52, 55, 61, 62, 351, 44, 34, 39, 86]


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _examples() -> list[str]:
    found = set()
    for region in phonenumbers.SUPPORTED_REGIONS:
        for kind in TYPES:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                found.add(phonenumbers.format_number(example, PhoneNumberFormat.E164))
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        example = phonenumbers.example_number_for_non_geo_entity(code)
        if example is not None:
            found.add(phonenumbers.format_number(example, PhoneNumberFormat.E164))
    return sorted(found)


def _assert_same(phones: list[str]) -> None:
    differ = [(p, zone_names(p), library_zone_names(p)) for p in phones]
    differ = [d for d in differ if d[1] != d[2]]
    assert not differ, differ[:10]


def test_example_numbers_of_every_region_and_type_and_their_near_misses():
    rng = random.Random(7)
    phones = []
    for example in _examples():
        phones.append(example)
        for _ in range(12):  # the tail changed from a random digit on, one longer or shorter
            keep = rng.randint(2, len(example) - 1)
            phones.append(
                example[:keep] + _digits(rng, len(example) - keep + rng.choice((-1, 0, 1)))
            )
    assert len(phones) > 12_000
    _assert_same(phones)


def test_random_numbers_of_every_calling_code():
    rng = random.Random(3)
    phones = [
        f"+{code}{_digits(rng, rng.randint(0, 16))}"
        for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE
        for _ in range(40)
    ]
    phones += [f"+{_digits(rng, rng.randint(1, 19))}" for _ in range(5_000)]
    _assert_same(phones)


def test_many_plausible_numbers_of_the_big_multi_zone_countries():
    rng = random.Random(5)
    phones = []
    for code in BIG:
        for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]:
            for kind in TYPES:
                example = phonenumbers.example_number_for_type(region, kind)
                if example is None:
                    continue
                e164 = phonenumbers.format_number(example, PhoneNumberFormat.E164)
                for _ in range(60):  # the area / operator prefix kept, the subscriber random
                    keep = rng.randint(len(str(code)) + 1, min(len(e164) - 1, len(str(code)) + 5))
                    phones.append(e164[:keep] + _digits(rng, len(e164) - keep))
    assert len(phones) > 10_000
    _assert_same(phones)


def test_text_that_is_not_canonical_e164_goes_through_the_library():
    phones = ["", "+", "abc", "+1 212 555 0100", "00351912345678", "+351-91-234-5678"]
    phones += ["+٣٥١٩١٢٣٤٥٦٧٨", "+3510912345678", "+39 06 1234 5678", "+390612345678"]
    phones += ["+0351912345678", "+999123456", "+88112345678", "+80012345678"]
    _assert_same(phones)


def test_the_gate_reads_the_same_zones_and_utc_for_what_has_none():
    assert zones_for_phone("+351912345678") == (
        ZoneInfo("Atlantic/Azores"),
        ZoneInfo("Europe/Lisbon"),
    )
    assert zones_for_phone("+4915123456789") == (ZoneInfo("Europe/Berlin"),)
    assert zones_for_phone("+35199") == (ZoneInfo("UTC"),)  # invalid: Etc/Unknown
    assert zones_for_phone("not a number") == (ZoneInfo("UTC"),)
    assert zones_for("+351912345678", "Asia/Tokyo") == (ZoneInfo("Asia/Tokyo"),)

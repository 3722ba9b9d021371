"""campaigns.e164.is_valid says what phonenumbers.is_valid_number says, for every region."""

from __future__ import annotations

import random

import phonenumbers
from phonenumbers import PhoneNumberType

from campaigns.e164 import is_valid

TYPES = [
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER,
    PhoneNumberType.UAN,
    PhoneNumberType.VOICEMAIL,
]


def _variants(number: phonenumbers.PhoneNumber, rng: random.Random) -> list[str]:
    """The number in E.164 and near misses: digits changed, one more, one fewer."""
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    found = [e164, e164 + "1", e164[:-1]]
    for _ in range(6):
        at = rng.randrange(len(str(number.country_code)) + 1, len(e164))
        found.append(e164[:at] + str(rng.randrange(10)) + e164[at + 1 :])
    return found


def test_example_numbers_of_every_region_and_their_near_misses():
    rng = random.Random(11)
    checked = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in TYPES:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            for text in _variants(example, rng):
                try:
                    number = phonenumbers.parse(text, None)
                except phonenumbers.NumberParseException:
                    continue
                assert is_valid(number) == phonenumbers.is_valid_number(number), text
                checked += 1
    assert checked > 5_000


def test_random_numbers_of_shared_calling_codes():
    rng = random.Random(5)
    shared = [
        cc for cc, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items() if len(regions) > 1
    ]
    valid = 0
    for cc in shared:
        for _ in range(400):
            text = f"+{cc}{rng.randrange(10**9, 10**11)}"[: rng.randrange(9, 16)]
            number = phonenumbers.parse(text, None)
            expected = phonenumbers.is_valid_number(number)
            assert is_valid(number) == expected, text
            valid += expected
    assert valid > 100

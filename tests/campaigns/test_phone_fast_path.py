"""campaigns.e164_fast changes no answer: `recipient_phone` (fast path first) says what
`library_recipient_phone` (phonenumbers alone) says, number for number, reason for reason,
over generated numbers of every region, in every shape, their near misses and junk."""

from __future__ import annotations

import random

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from campaigns import e164_fast
from campaigns.e164 import _clean, library_recipient_phone, recipient_phone

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
REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
# Default regions of an import: common ones, ones with odd prefixes (NANPA's 1, Italy's
# leading zero, Argentina's and Mexico's national prefixes, Russia/Kazakhstan sharing +7).
DEFAULTS = ["US", "GB", "DE", "IN", "BR", "IT", "AR", "MX", "RU", "KZ", "CA", "AU", "FR"]


def _same(raw: str, region: str) -> bool:
    return recipient_phone(raw, region) == library_recipient_phone(raw, region)


def _mutations(text: str, rng: random.Random) -> list[str]:
    """`text` and near misses: a digit changed, one more, one fewer, one dropped inside."""
    found = [text, text + str(rng.randrange(10)), text[:-1]]
    digit_positions = [i for i, c in enumerate(text) if c.isdigit()]
    for _ in range(4):
        at = rng.choice(digit_positions)
        found.append(text[:at] + str(rng.randrange(10)) + text[at + 1 :])
    at = rng.choice(digit_positions)
    found.append(text[:at] + text[at + 1 :])
    return found


def _shapes(number: phonenumbers.PhoneNumber, region: str) -> list[str]:
    """The ways a list writes one number: E.164, international, national, 00, the IDD of
    the US, the calling code without +, a national prefix doubled, a spurious 0."""
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    return [
        e164,
        phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL),
        national,
        "00" + e164[1:],
        "011" + e164[1:],
        e164[1:],
        "0" + national,
        "1" + national,
    ]


def test_every_region_and_type_in_every_shape_and_near_miss():
    rng = random.Random(20261202)
    checked = fast = 0
    for region in REGIONS:
        for kind in TYPES:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            for shape in _shapes(example, region):
                for text in _mutations(shape, rng):
                    for default in (region, rng.choice(DEFAULTS)):
                        assert _same(text, default), (text, default)
                        checked += 1
                        cleaned, refused = _clean(text)
                        fast += not refused and e164_fast.lookup(cleaned, default) is not None
    assert checked > 40_000
    assert fast > 10_000  # the fast path did answer a good share of them


def test_random_digit_strings_for_random_regions():
    rng = random.Random(7)
    codes = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    valid = 0
    for _ in range(20_000):
        region = rng.choice(REGIONS)
        length = rng.randrange(3, 18)
        digits = "".join(str(rng.randrange(10)) for _ in range(length))
        for text in (digits, f"+{rng.choice(codes)}{digits}", f"+{digits}", f"00{digits}"):
            assert _same(text, region), (text, region)
            valid += recipient_phone(text, region)[0] is not None
    assert valid > 1_000


def test_shared_calling_codes_pick_the_region_the_library_picks():
    rng = random.Random(5)
    shared = [cc for cc, r in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items() if len(r) > 1]
    for cc in shared:
        for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[cc]:
            for _ in range(60):
                national = str(rng.randrange(10**6, 10**11))[: rng.randrange(6, 12)]
                for text in (f"+{cc}{national}", national, f"{cc}{national}"):
                    assert _same(text, region), (text, region)


def test_malformed_inputs_get_the_same_reasons():
    junk = [
        "",
        " ",
        "+",
        "++14155552671",
        "+0 415 555 2671",
        "n/a",
        "415-555-CALL",
        "tel:+1-415-555-2671",
        "+1 415 555 2671 ext 12",
        "+1 (415) 555-2671;ext=3",
        "４１５５５５２６７１",
        "+1 415 555 267１",
        "0",
        "00",
        "000",
        "+1",
        "+12",
        "+123",
        "1234",
        "+999 1234 5678",
        "+800 1234 5678",
        "+882 1234 5678",
        "+1 415 555 2671 0000 0000 0000",
        "1" * 18,
        "+" + "1" * 18,
        "0" * 12,
        "+39 06 6988 0000",
        "06 6988 0000",
        "+54 9 11 1234 5678",
        "011 15 1234 5678",
        "+3758102450911",  # BY: parse() strips the 8 after +375
    ]
    for raw in junk:
        for region in DEFAULTS:
            assert _same(raw, region), (raw, region)


def test_numbers_written_with_a_national_prefix_or_a_leading_zero():
    """Near misses of every region's examples with its national prefix (trunk 0, 8, 1…) or a
    0 in front, nationally and after the calling code: where parse() strips a prefix."""
    rng = random.Random(3)
    for region in REGIONS:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        prefix = metadata.national_prefix or ""
        for kind in TYPES:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            nsn = phonenumbers.national_significant_number(example)
            cc = example.country_code
            for _ in range(12):
                digits = list(nsn)
                for _ in range(rng.randrange(1, 4)):
                    digits[rng.randrange(len(digits))] = str(rng.randrange(10))
                n = "".join(digits)
                for text in (prefix + n, f"+{cc}{prefix}{n}", "0" + n, f"+{cc}0{n}"):
                    for default in (region, "US"):
                        assert _same(text, default), (text, default)

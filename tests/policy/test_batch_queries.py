"""The claim's per-batch queries answer the same on PostgreSQL's array SQL and the portable SQL:
`sql_paths.AnyOf` (field = ANY(array) there, IN elsewhere) and `optout.suppressed_among`
(PostgreSQL hashes the numbers itself)."""

from __future__ import annotations

import pytest
from django.db.models import F

from campaigns.models import Contact, Suppression
from messaging.policy.optout import suppressed_among
from messaging.sql_paths import AnyOf
from tests import factories

pytestmark = pytest.mark.django_db


def test_any_of_matches_what_in_matches(sql_path):
    contacts = [factories.ContactFactory() for _ in range(5)]
    phones = [c.phone for c in contacts[:3]] + ["+15550000000", None, contacts[0].phone]
    found = Contact.objects.filter(AnyOf(F("phone"), phones)).values_list("pk", flat=True)
    assert sorted(found) == sorted(c.pk for c in contacts[:3])
    ids = [contacts[1].pk, contacts[4].pk]
    assert sorted(Contact.objects.filter(AnyOf(F("pk"), ids)).values_list("pk", flat=True)) == ids
    kept = Contact.objects.exclude(AnyOf(F("pk"), ids)).values_list("pk", flat=True)
    assert sorted(kept) == sorted(c.pk for c in contacts if c.pk not in ids)


def test_any_of_an_empty_list_matches_nothing_and_excludes_nothing(sql_path):
    contacts = [factories.ContactFactory() for _ in range(2)]
    assert not Contact.objects.filter(AnyOf(F("phone"), [])).exists()
    assert Contact.objects.exclude(AnyOf(F("pk"), [])).count() == len(contacts)


def test_suppressed_among_finds_suppressed_numbers_erased_ones_by_their_hash(sql_path):
    kept = factories.SuppressionFactory()
    erased = factories.SuppressionFactory()
    erased_phone = erased.phone
    Suppression.objects.filter(pk=erased.pk).update(phone=None)  # only the hash is left
    free = factories.ContactFactory().phone
    assert suppressed_among([kept.phone, erased_phone, free, kept.phone]) == {
        kept.phone,
        erased_phone,
    }
    assert suppressed_among([free]) == set()
    assert suppressed_among([]) == set()

"""The import's contact writes (messaging/campaign_import/contacts_sql.py): new numbers are
COPYed in, known ones upserted, and a number whose contact appeared after the look-up still
ends with one contact, its attributes merged."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from campaigns.csv_import.chunks import render_chunk
from campaigns.csv_import.rendering import TemplatePlan
from campaigns.models import Contact
from messaging.campaign_import.contacts_sql import write_contacts
from messaging.campaign_import.postgres import _PostgresImport
from tests import factories
from tests.factories import e164

pytestmark = pytest.mark.django_db

BATCH = "wac_test_contacts_batch"


def _rendered(rows: list[tuple[str, str, dict[str, str]]]):
    kept = [(n + 2, phone, name, values) for n, (phone, name, values) in enumerate(rows)]
    return render_chunk([TemplatePlan(template_id=1, label="t")], [1], 1, kept, 0, [])


def _write(rows, known):
    with connection.cursor() as cursor:
        _PostgresImport._prepare(cursor, BATCH, writing=True)
        ids = write_contacts(cursor, BATCH, _rendered(rows), known, timezone.now())
        cursor.execute(f"DROP TABLE {BATCH}")
    return ids


def test_new_numbers_become_contacts_with_their_name_and_attributes():
    before = timezone.now()
    ids = _write(
        [(e164(2), "Bo\\b\t", {"name": "Bo\\b\t", "code": 'C"1'}), (e164(1), "", {"code": "X"})],
        known={},
    )
    contacts = {c.phone: c for c in Contact.objects.all()}
    assert ids == {phone: contact.pk for phone, contact in contacts.items()}
    assert (contacts[e164(2)].name, contacts[e164(2)].attributes) == ("Bo\\b\t", {"code": 'C"1'})
    assert (contacts[e164(1)].name, contacts[e164(1)].attributes) == ("", {"code": "X"})
    assert all(c.wa_id == "" and c.created_at >= before for c in contacts.values())


def test_a_contact_created_after_the_look_up_is_upserted_not_duplicated():
    # The look-up found no contact for e164(1) (`known` is empty), then another import
    # created it: the COPY of new contacts fails on the phone's unique index and the
    # chunk's numbers are upserted instead.
    late = factories.ContactFactory(phone=e164(1), name="Late", attributes={"tier": "gold"})
    ids = _write(
        [(e164(1), "Ann", {"name": "Ann", "code": "A"}), (e164(2), "Bob", {"name": "Bob"})],
        known={},
    )
    assert Contact.objects.count() == 2
    late.refresh_from_db()
    assert (late.name, late.attributes) == ("Ann", {"tier": "gold", "code": "A"})
    assert ids == {e164(1): late.pk, e164(2): Contact.objects.get(phone=e164(2)).pk}


def test_known_numbers_are_upserted_and_new_ones_copied_in_one_chunk():
    known = factories.ContactFactory(phone=e164(3), name="Old", attributes={"a": "1"})
    ids = _write(
        [(e164(4), "New", {"name": "New"}), (e164(3), "", {"b": "2"})],
        known={e164(3): known.pk},
    )
    known.refresh_from_db()
    assert (known.name, known.attributes) == ("Old", {"a": "1", "b": "2"})
    assert ids[e164(3)] == known.pk
    assert Contact.objects.get(pk=ids[e164(4)]).name == "New"

"""The suppression hash: one function, the same in SQL, and what the import matches on."""

from __future__ import annotations

import pytest
from django.db import connection

from campaigns.models import Suppression
from campaigns.suppression import phone_hash, phone_hash_sql, suppressed_phones
from messaging.campaign_import import batch, create_campaign_from_csv, service
from messaging.models import OutboundMessage
from messaging.policy.optout import opt_out

pytestmark = pytest.mark.django_db


def test_the_hash_is_keyed_and_postgresql_computes_the_same(settings):
    settings.SUPPRESSION_HASH_PEPPER = "pepper-one"
    first = phone_hash("+14155552671")
    assert len(first) == 64 and first != phone_hash("+14155552672")
    sql, params = phone_hash_sql("%s")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sql}", [*params, "+14155552671"])
        assert cursor.fetchone()[0] == first
    settings.SUPPRESSION_HASH_PEPPER = "pepper-two"
    assert phone_hash("+14155552671") != first
    # A long pepper (over one SHA-256 block) is hashed first, in SQL as in Python.
    settings.SUPPRESSION_HASH_PEPPER = "p" * 100
    sql, params = phone_hash_sql("%s")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sql}", [*params, "+14155552671"])
        assert cursor.fetchone()[0] == phone_hash("+14155552671")


def test_every_way_in_stores_the_hash():
    opt_out(phones=["+14155552671"], source="staff")
    Suppression.objects.create(phone="+14155552672")
    for entry in Suppression.objects.all():
        assert entry.phone_hash == phone_hash(entry.phone)


def _erased_suppression(phone: str) -> None:
    opt_out(phones=[phone], source="staff")
    Suppression.objects.filter(phone=phone).update(phone=None, source="erasure")


@pytest.mark.parametrize("path", ["postgres", "batch"])
def test_import_refuses_a_number_suppressed_only_by_its_hash(
    path, sender, templates, write_csv, monkeypatch
):
    if path == "batch":
        monkeypatch.setattr(service, "_backend", batch._BatchImport)
    _erased_suppression("+14155552673")
    assert suppressed_phones(["+14155552673", "+14155552675"]) == {"+14155552673"}
    result = create_campaign_from_csv(
        name="After erasure",
        csv_file=write_csv("phone,name,code\n4155552673,Cy,C3\n4155552675,Ed,E5\n"),
        sender=sender,
        templates=[(templates[0], 1)],
    )
    assert (result.queued, result.suppressed) == (1, 1)
    assert list(OutboundMessage.objects.values_list("phone", flat=True)) == ["+14155552675"]

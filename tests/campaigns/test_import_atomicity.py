"""A failure anywhere in an import leaves nothing behind: no campaign, contact change, queue
row or rejection. Real commits (transaction=True), real PostgreSQL errors."""

from __future__ import annotations

import re

import pytest
from django.db import DatabaseError, connection

from campaigns.csv_import import CsvImportError
from campaigns.models import Campaign, CampaignTemplate, Contact, ImportRejection
from messaging.campaign_import import create_campaign_from_csv, producer
from messaging.models import OutboundMessage
from tests import factories
from tests.factories import e164

pytestmark = pytest.mark.django_db(transaction=True)

FAIL_PHONE = e164(40)


@pytest.fixture
def small_chunks(monkeypatch):
    """Many COPY chunks, so the failure comes after earlier chunks were fully written."""
    monkeypatch.setattr(producer, "CHUNK_ROWS", 5)


@pytest.fixture
def failing_insert():
    """A trigger that makes PostgreSQL refuse the queue row of FAIL_PHONE."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION wac_test_refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused %', NEW.phone; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER wac_test_refuse BEFORE INSERT ON messaging_outboundmessage "
            f"FOR EACH ROW WHEN (NEW.phone = '{FAIL_PHONE}') EXECUTE FUNCTION wac_test_refuse()"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER wac_test_refuse ON messaging_outboundmessage")
        cursor.execute("DROP FUNCTION wac_test_refuse()")


def assert_nothing_written(existing: Contact) -> None:
    assert not Campaign.objects.exists()
    assert not CampaignTemplate.objects.exists()
    assert not OutboundMessage.objects.exists()
    assert not ImportRejection.objects.exists()
    assert list(Contact.objects.all()) == [existing]
    existing.refresh_from_db()
    assert (existing.name, existing.attributes) == ("Before", {"code": "old"})


def rows(count: int) -> list[str]:
    return [f"{e164(i)},N{i},C{i}" for i in range(count)]


@pytest.fixture
def existing():
    return factories.ContactFactory(phone=e164(1), name="Before", attributes={"code": "old"})


def test_broken_row_late_in_the_file_rolls_everything_back(
    sender, templates, write_csv, small_chunks, existing
):
    lines = [*rows(50), "bad", *rows(3)]  # bad row 52; invalid numbers before it too
    lines[10] = "12345,X,Y"
    path = write_csv("phone,name,code\n" + "\n".join(lines) + "\n")
    with pytest.raises(CsvImportError, match="row 52: expected 3 fields, got 1"):
        create_campaign_from_csv(
            name="c", csv_file=path, sender=sender, templates=[(t, 1) for t in templates]
        )
    assert_nothing_written(existing)


def test_database_error_mid_import_rolls_everything_back(
    sender, templates, write_csv, small_chunks, failing_insert, existing
):
    path = write_csv("phone,name,code\n12345,X,Y\n" + "\n".join(rows(60)) + "\n")
    with pytest.raises(DatabaseError, match=re.escape(f"refused {FAIL_PHONE}")):
        create_campaign_from_csv(
            name="c",
            csv_file=path,
            sender=sender,
            templates=[(t, 1) for t in templates],
            start_now=True,
        )
    assert_nothing_written(existing)


def test_the_connection_is_usable_after_a_failed_import(
    sender, templates, write_csv, small_chunks, existing
):
    with pytest.raises(CsvImportError):
        create_campaign_from_csv(
            name="c",
            csv_file=write_csv("phone,name,code\n" + "\n".join([*rows(12), "x,y"]) + "\n"),
            sender=sender,
            templates=[(templates[0], 1)],
        )
    result = create_campaign_from_csv(
        name="again",
        csv_file=write_csv("phone,name,code\n" + "\n".join(rows(12)) + "\n"),
        sender=sender,
        templates=[(templates[0], 1)],
    )
    assert result.queued == 12
    assert OutboundMessage.objects.count() == 12

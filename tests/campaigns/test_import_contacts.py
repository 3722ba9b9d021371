"""The import's contact writes (messaging/campaign_import/contacts_sql.py): a chunk of new
numbers is COPYed in; a chunk with a number that has a contact is upserted, and so is the
rest of the file; the contacts and ids come out the same either way."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from campaigns.csv_import.chunks import joined_columns, render_chunk
from campaigns.csv_import.rendering import TemplatePlan
from campaigns.models import Contact
from messaging.campaign_import import create_campaign_from_csv
from messaging.campaign_import.contacts_sql import ContactWriter
from messaging.campaign_import.postgres import _PostgresImport
from messaging.models import OutboundMessage
from tests import factories
from tests.concurrency import in_thread, waiting_for_locks
from tests.engine.conftest import _wait_until
from tests.factories import e164

pytestmark = pytest.mark.django_db

BATCH = "wac_test_contacts_batch"


def _rendered(rows: list[tuple[str, str, dict[str, str]]]):
    kept = [(n + 2, phone, name, values) for n, (phone, name, values) in enumerate(rows)]
    return render_chunk([TemplatePlan(template_id=1, label="t")], [1], 1, kept, 0, [])


def _write(*chunks):
    """Each chunk's ids, the chunks written in turn as one import writes them."""
    with connection.cursor() as cursor:
        _PostgresImport._prepare(cursor, BATCH, writing=True)
        writer = ContactWriter(cursor, BATCH, timezone.now())
        ids = []
        for rows in chunks:
            rendered = _rendered(rows)
            ids.append(dict(zip(rendered.phones, map(int, writer.write(rendered, list)))))
        cursor.execute(f"DROP TABLE {BATCH}")
    return ids


def test_new_numbers_become_contacts_with_their_name_and_attributes():
    before = timezone.now()
    [ids] = _write(
        [(e164(2), "Bo\\b\t", {"name": "Bo\\b\t", "code": 'C"1'}), (e164(1), "", {"code": "X"})]
    )
    contacts = {c.phone: c for c in Contact.objects.all()}
    assert ids == {phone: contact.pk for phone, contact in contacts.items()}
    assert (contacts[e164(2)].name, contacts[e164(2)].attributes) == ("Bo\\b\t", {"code": 'C"1'})
    assert (contacts[e164(1)].name, contacts[e164(1)].attributes) == ("", {"code": "X"})
    assert all(c.wa_id == "" and c.created_at >= before for c in contacts.values())


def test_a_chunk_with_a_known_number_and_the_rest_of_the_file_are_upserted():
    late = factories.ContactFactory(phone=e164(1), name="Late", attributes={"tier": "gold"})
    first, second = _write(
        [(e164(1), "Ann", {"name": "Ann", "code": "A"}), (e164(2), "Bob", {"name": "Bob"})],
        [(e164(3), "", {"b": "2"})],
    )
    assert Contact.objects.count() == 3  # no second contact of e164(1)
    late.refresh_from_db()
    assert (late.name, late.attributes) == ("Ann", {"tier": "gold", "code": "A"})
    by_phone = dict(Contact.objects.values_list("phone", "pk"))
    assert first == {e164(1): late.pk, e164(2): by_phone[e164(2)]}
    assert second == {e164(3): by_phone[e164(3)]}


def test_the_upsert_keeps_a_blank_name_and_merges_attributes():
    known = factories.ContactFactory(phone=e164(3), name="Old", attributes={"a": "1"})
    [ids] = _write([(e164(4), "New", {"name": "New"}), (e164(3), "", {"b": "2"})])
    known.refresh_from_db()
    assert (known.name, known.attributes) == ("Old", {"a": "1", "b": "2"})
    assert ids[e164(3)] == known.pk
    assert Contact.objects.get(pk=ids[e164(4)]).name == "New"


def test_a_contact_line_holds_the_attributes_as_json_dumps_writes_them():
    values = {"name": "N", "code": 'A "q" \\ é ✓ \u2028', "city": "x\x7f/"}
    [line] = _rendered([(e164(1), "N", dict(values))]).contacts
    phone, name, attributes = line.removesuffix("\n").split("\t")
    expected = json.dumps(
        {"code": values["code"], "city": values["city"]}, ensure_ascii=False, separators=(",", ":")
    )
    assert (phone, name) == (e164(1), "N")
    assert attributes.replace("\\\\", "\\") == expected  # COPY's text format doubles them


@pytest.mark.django_db(transaction=True)
def test_two_imports_sharing_numbers_at_once_give_one_contact_per_number(
    sender, templates, write_csv, settings
):
    """Import a writes its contacts and has not committed; import b, with half of a's
    numbers, waits on them in its contact COPY, which fails once a commits: b's chunk goes
    through the upsert. Both campaigns get every row, each number one contact."""
    settings.IMPORT_PARSE_PROCESS_FROM_ROWS = 1
    first = write_csv("phone,name,code\n" + "".join(f"{e164(i)},A{i},a\n" for i in range(40)))
    second = write_csv("phone,name,code\n" + "".join(f"{e164(i)},B{i},b\n" for i in range(20, 60)))
    written, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def import_a() -> None:
        with transaction.atomic():
            create_campaign_from_csv(
                name="a", csv_file=first, sender=sender, templates=[(templates[0], 1)]
            )
            written.set()
            release.wait(30)

    a = in_thread(import_a, errors)
    assert written.wait(30)
    b = in_thread(
        lambda: create_campaign_from_csv(
            name="b", csv_file=second, sender=sender, templates=[(templates[0], 1)]
        ),
        errors,
    )
    try:
        _wait_until(waiting_for_locks, timeout=30)
    finally:
        release.set()
        a.join(30)
        b.join(60)
    assert errors == []
    assert Contact.objects.count() == 60
    for name, numbers in (("a", range(40)), ("b", range(20, 60))):
        rows = OutboundMessage.objects.filter(campaign__name=name)
        assert sorted(rows.values_list("phone", flat=True)) == [e164(i) for i in numbers]
        assert all(m.contact.phone == m.phone for m in rows.select_related("contact"))
    shared = Contact.objects.get(phone=e164(30))
    assert (shared.name, shared.attributes) == ("B30", {"code": "b"})  # b's upsert, after a


def test_rows_joined_from_their_columns_are_the_rows_made_one_by_one():
    ids, between, lines = ["7", "12", "3"], ["\t\t"] * 3, ["a\n", "b\tc\n", "\n"]
    assert joined_columns(ids, between, lines) == "".join(
        i + b + line for i, b, line in zip(ids, between, lines, strict=True)
    )
    assert joined_columns(["1"], ["x\n"]) == "1x\n"
    assert joined_columns([], []) == ""


def test_a_chunks_contacts_come_in_phone_order_with_their_rows_positions():
    rendered = _rendered([(e164(3), "C", {}), (e164(1), "A", {}), (e164(2), "B", {})])
    assert rendered.order == [1, 2, 0]
    assert [line.split("\t")[0] for line in rendered.contacts] == [e164(1), e164(2), e164(3)]
    assert [rendered.phones[i] for i in rendered.order] == sorted(rendered.phones)

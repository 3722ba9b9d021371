"""Contact lists (by CSV, by API rows, by selection) and segments, as audiences of drafts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError

from campaigns.models import Contact, ContactList, Segment
from campaigns.segments import SegmentError, parse_rules, segment_contacts
from messaging.audiences import (
    add_contacts_to_list,
    add_rows_to_list,
    draft_from_audience,
    list_audience,
    segment_audience,
    selection_audience,
)
from messaging.campaign_import import CsvAudience, RowsAudience
from messaging.models import OutboundMessage
from tests import factories
from tests.audiences.conftest import NOW

pytestmark = pytest.mark.django_db


def test_api_rows_are_checked_like_a_csv_and_added_once():
    contact_list = ContactList.objects.create(name="VIP")
    result = add_rows_to_list(
        contact_list=contact_list,
        audience=RowsAudience(
            [
                {"phone": "(415) 555-2671", "name": "Ann", "city": "Lisbon"},
                {"phone": "12345", "name": "Typo"},
                {"phone": "+1 415 555 2671", "name": "Ann again"},
                {"Phone": "4155552672", "name": "Bob", "city": None},
            ]
        ),
        default_region="US",
    )
    assert (result.added, result.already, result.rejected, result.duplicates) == (2, 0, 1, 1)
    assert result.rejections[0].row_number == 2
    assert result.rejections[0].reason == "too short for US"
    ann = Contact.objects.get(phone="+14155552671")
    assert (ann.name, ann.attributes) == ("Ann", {"city": "Lisbon"})
    again = add_rows_to_list(
        contact_list=contact_list, audience=RowsAudience([{"phone": "+14155552671"}])
    )
    assert (again.added, again.already) == (0, 1)
    assert contact_list.members.count() == 2


def test_rows_without_a_phone_column_are_refused_saying_which_columns_came():
    with pytest.raises(ValueError, match=r"no phone column.*columns given: '?name"):
        add_rows_to_list(
            contact_list=ContactList.objects.create(name="X"),
            audience=RowsAudience([{"name": "Ann"}]),
        )


def test_a_csv_fills_a_list_and_the_list_becomes_a_draft(tmp_path, sender, template, sql_path):
    contact_list = ContactList.objects.create(name="Lisbon shop")
    path = tmp_path / "list.csv"
    path.write_text("phone,name,city,code\n4155552671,Ann,Lisbon,A1\n4155552672,Bob,Porto,B2\n")
    added = add_rows_to_list(contact_list=contact_list, audience=CsvAudience(path))
    assert added.added == 2
    result = draft_from_audience(
        audience=list_audience(contact_list),
        name="From the list",
        sender_id=sender.pk,
        templates=[(template, 1)],
    )
    assert result.queued == 2
    rows = OutboundMessage.objects.filter(campaign=result.campaign).order_by("id")
    assert [r.phone for r in rows] == ["+14155552671", "+14155552672"]
    # {{1}} = name, {{2}} = the first attribute alphabetically (city).
    assert [p["text"] for p in rows[0].parameters[0]["parameters"]] == ["Ann", "Lisbon"]


def test_selected_contacts_join_a_list_once():
    contacts = [factories.ContactFactory() for _ in range(3)]
    contact_list = ContactList.objects.create(name="Picked")
    chosen = Contact.objects.filter(pk__in=[c.pk for c in contacts[:2]])
    assert add_contacts_to_list(contact_list=contact_list, contacts=chosen) == 2
    assert add_contacts_to_list(contact_list=contact_list, contacts=Contact.objects.all()) == 1


def test_segment_rules_select_by_attribute_and_last_reply(finished):
    lisbon = set(segment_contacts("city = Lisbon").values_list("name", flat=True))
    assert lisbon == {"delivered_old", "read_quiet", "failed_retryable", "sent_only"}
    replied = segment_contacts("city != Lisbon\nlast_reply within 30 days", now=NOW)
    assert list(replied.values_list("name", flat=True)) == ["read_replied"]
    assert not segment_contacts("last_reply within 1 day", now=NOW).exists()
    quiet = segment_contacts("no reply within 30 days\nname contains READ")
    assert list(quiet.values_list("name", flat=True)) == ["read_quiet"]
    factories.ContactFactory(attributes={"vip": "yes"})
    assert segment_contacts("vip is set").count() == 1
    assert segment_contacts("vip is not set").count() == 7
    assert segment_contacts("phone starts with +1415").count() == 8
    # Contacts without the attribute count as "not Lisbon".
    assert segment_contacts("city != Lisbon").count() == 4


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("", "at least one condition"),
        ("city Lisbon", "line 1: 'city Lisbon' is not a condition"),
        ("city = Lisbon\nvip is set yes", "line 2: 'is set' takes no value"),
        ("city =", "line 1: city = what?"),
    ],
)
def test_bad_segment_rules_say_which_line(rules, message):
    with pytest.raises(SegmentError, match=message):
        parse_rules(rules)
    with pytest.raises(ValidationError):
        Segment(name="s", rules=rules).full_clean()


def test_a_segment_and_a_selection_become_drafts(finished, sender, template, sql_path):
    segment = Segment.objects.create(name="Lisbon", rules="city = Lisbon")
    result = draft_from_audience(
        audience=segment_audience(segment),
        name="Lisbon",
        sender_id=sender.pk,
        templates=[(template, 1)],
    )
    assert result.queued == 4
    picked = Contact.objects.filter(name__startswith="read")
    result = draft_from_audience(
        audience=selection_audience(picked),
        name="Readers",
        sender_id=sender.pk,
        templates=[(template, 1)],
    )
    assert result.queued == 2
    assert result.campaign.created_at - NOW < timedelta(days=1)

"""Contact lists through the API: the same checks and the same service as the admin's CSV."""

from __future__ import annotations

import pytest

from campaigns.models import Contact, ContactList
from messaging.integrations.keys import create_api_key
from tests.integrations.conftest import api_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def customers(db):
    return ContactList.objects.create(name="customers")


def test_contacts_are_added_once_normalised_with_attributes_and_bad_rows_named(api, customers):
    body = {
        "contacts": [
            {"phone": "+351 912 345 678", "name": "Ana", "attributes": {"city": "Lisbon"}},
            {"phone": "912345679", "attributes": {"city": "Porto"}},  # national, region PT
            {"phone": "+351912345678"},  # the first one again
            {"phone": "not a number"},
        ],
        "default_region": "PT",
    }
    response = api.post(f"/lists/{customers.pk}/contacts", body)
    assert response.status_code == 200, response.content
    report = response.json()
    assert (report["added"], report["duplicates"], report["rejected"]) == (2, 1, 1)
    assert report["rejections"][0]["row_number"] == 4
    assert report["rejections"][0]["value"] == "not a number"
    assert report["contact_list"]["members"] == 2
    ana = Contact.objects.get(phone="+351912345678")
    assert (ana.name, ana.attributes["city"]) == ("Ana", "Lisbon")
    assert Contact.objects.get(phone="+351912345679").attributes["city"] == "Porto"

    again = api.post(f"/lists/{customers.pk}/contacts", {"contacts": [{"phone": "+351912345678"}]})
    assert (again.json()["added"], again.json()["already"]) == (0, 1)
    assert api.get(f"/lists/{customers.pk}").json()["members"] == 2


def test_bad_requests_say_what_and_where_and_write_nothing(api, customers):
    reserved = api.post(
        f"/lists/{customers.pk}/contacts",
        {"contacts": [{"phone": "+351912345678", "attributes": {"phone": "x"}}]},
    )
    assert reserved.status_code == 400
    assert reserved.json()["error"]["field"] == "contacts[0].attributes"
    region = api.post(
        f"/lists/{customers.pk}/contacts",
        {"contacts": [{"phone": "912345678"}], "default_region": "ZZ"},
    )
    assert region.status_code == 400 and "ZZ" in region.json()["error"]["message"]
    missing = api.post("/lists/999999/contacts", {"contacts": [{"phone": "+351912345678"}]})
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "list_id"
    assert not Contact.objects.exists()
    assert customers.members.count() == 0


def test_adding_needs_the_contacts_write_scope(customers):
    reader = api_for(create_api_key(name="reader", scopes=["contacts:read"]).secret)
    response = reader.post(f"/lists/{customers.pk}/contacts", {"contacts": [{"phone": "+1"}]})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "missing_scope"
    assert reader.get(f"/lists/{customers.pk}").status_code == 200

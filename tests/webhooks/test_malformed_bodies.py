import logging

import pytest

from tests.webhooks.payloads import post
from webhooks.models import RawEvent

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"object": "page", "entry": []}', "'object'"),
        (b'{"object": "whatsapp_business_account"}', "'entry'"),
        (b'{"object": "whatsapp_business_account", "entry": [{"id": "1"}]}', "entry[0]"),
        (
            b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": 1}]}]}',
            "entry[0].changes[0]",
        ),
    ],
)
def test_malformed_body_is_a_logged_400_and_not_stored(client, caplog, body, where):
    with caplog.at_level(logging.WARNING, logger="webhooks.views"):
        response = post(client, body)
    assert response.status_code == 400
    assert where in response.content.decode()
    assert where in caplog.text
    assert not RawEvent.objects.exists()


def test_other_methods_are_not_allowed(client):
    assert client.put("/webhooks/whatsapp/").status_code == 405

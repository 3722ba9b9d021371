import json

import pytest

from tests.webhooks.payloads import post, status, statuses_body
from webhooks.models import RawEvent
from webhooks.signature import sign

pytestmark = pytest.mark.django_db

BODY = json.dumps(statuses_body([status("wamid.A", "sent")])).encode()


def test_a_validly_signed_body_is_stored_once_and_answered_200(client):
    response = post(client, BODY)
    assert response.status_code == 200
    assert [bytes(r.body) for r in RawEvent.objects.all()] == [BODY]


def test_a_body_signed_with_another_secret_is_refused_and_not_stored(client):
    assert post(client, BODY, secret="someone-else").status_code == 403
    assert not RawEvent.objects.exists()


def test_a_missing_signature_is_refused(client):
    response = client.post("/webhooks/whatsapp/", data=BODY, content_type="application/json")
    assert response.status_code == 403
    assert not RawEvent.objects.exists()


def test_a_body_altered_by_one_byte_is_refused(client):
    signature = sign(BODY, "test-app-secret")
    altered = BODY.replace(b"sent", b"seNt")
    assert post(client, altered, signature=signature).status_code == 403
    assert not RawEvent.objects.exists()


def test_a_malformed_signature_header_is_refused(client):
    assert post(client, BODY, signature="sha1=abc").status_code == 403
    assert post(client, BODY, signature="sha256=\u00e9").status_code == 403
    assert not RawEvent.objects.exists()


def test_an_empty_app_secret_refuses_everything(client, settings):
    settings.WHATSAPP_APP_SECRET = ""
    assert post(client, BODY, secret="").status_code == 403
    assert not RawEvent.objects.exists()

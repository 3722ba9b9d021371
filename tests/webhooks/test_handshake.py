import pytest

from tests.webhooks.conftest import VERIFY_TOKEN
from tests.webhooks.payloads import URL

pytestmark = pytest.mark.django_db


def _get(client, token, mode="subscribe"):
    return client.get(
        URL, {"hub.mode": mode, "hub.verify_token": token, "hub.challenge": "1158201444"}
    )


def test_right_token_answers_the_raw_challenge(client):
    response = _get(client, VERIFY_TOKEN)
    assert response.status_code == 200
    assert response.content == b"1158201444"


def test_wrong_token_is_forbidden(client):
    assert _get(client, "guess").status_code == 403


def test_wrong_mode_is_forbidden(client):
    assert _get(client, VERIFY_TOKEN, mode="unsubscribe").status_code == 403


def test_an_empty_verify_token_setting_never_matches(client, settings):
    settings.WHATSAPP_VERIFY_TOKEN = ""
    assert _get(client, "").status_code == 403

"""Who may call the API: no key, a wrong key, a revoked key, a key without the scope."""

from __future__ import annotations

import time

import pytest
from django.core.management import call_command
from django.utils import timezone

from messaging.integrations.keys import authenticate, create_api_key
from messaging.integrations.models import ApiKey
from tests.integrations.conftest import api_for

pytestmark = pytest.mark.django_db


def send_body(sender):
    return {"sender": sender.phone_number_id, "to": "+14155550100", "text": "hi"}


def test_no_key_is_refused_with_a_json_error(sender):
    response = api_for(None).post("/messages", send_body(sender))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


def test_a_wrong_key_is_refused(sender, api_key):
    forged = api_key.secret[:-4] + "AAAA"
    for secret in (forged, "not-a-key", "wac_deadbeef_x"):
        response = api_for(secret).post("/messages", send_body(sender))
        assert response.status_code == 401, secret
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_a_revoked_key_is_refused(sender, api_key):
    ApiKey.objects.filter(pk=api_key.api_key.pk).update(revoked_at=timezone.now())
    response = api_for(api_key.secret).post("/messages", send_body(sender))
    assert response.status_code == 401


def test_a_key_without_the_scope_is_refused(sender, template):
    reader = create_api_key(name="reader", scopes=["messages:read"])
    response = api_for(reader.secret).post("/messages", send_body(sender))
    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "missing_scope",
        "message": "this API key lacks the scope 'messages:send'",
        "field": None,
    }
    campaign = api_for(reader.secret).post("/campaigns/1/pause")
    assert campaign.status_code == 403


def test_keys_are_stored_hashed_and_the_command_prints_one_once(capsys):
    call_command("create_api_key", "helpdesk", "--scopes", "messages:send", "campaigns:read")
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    key = ApiKey.objects.get(name="helpdesk")
    assert key.scopes == ["messages:send", "campaigns:read"]
    assert secret not in (key.key_hash, key.prefix) and secret.startswith("wac_")
    assert authenticate(secret) == key


def test_the_command_names_an_unknown_scope():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="unknown scope 'messages:write'"):
        call_command("create_api_key", "x", "--scopes", "messages:write")


def test_a_key_over_its_rate_gets_429_with_retry_after(sender, api_key):
    ApiKey.objects.filter(pk=api_key.api_key.pk).update(rate_limit_per_minute=3)
    client = api_for(api_key.secret)
    codes = [client.get("/messages/999999").status_code for _ in range(4)]
    assert codes == [404, 404, 404, 429]
    limited = client.get("/messages/999999")
    assert 1 <= int(limited["Retry-After"]) <= 61
    assert limited.json()["error"]["code"] == "rate_limited"


def test_an_oversized_body_is_refused_from_its_length(settings, api):
    settings.API_MAX_BODY_BYTES = 100
    response = api.post("/messages", {"sender": "x", "to": "y", "text": "z" * 200})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_the_openapi_document_is_published(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/messages" in paths and "/api/v1/campaigns/{campaign_id}/pause" in paths


def test_a_revoked_key_stops_working_at_once_in_every_process(
    sender, api_key, django_capture_on_commit_callbacks
):
    """The key is cached by each web process; revoking bumps a version in Redis that every
    request reads with its rate limit, so a process still holding the key drops it."""
    from messaging.integrations import lookup_cache
    from messaging.integrations.keys import revoke

    client = api_for(api_key.secret)
    assert client.get("/messages/999999").status_code == 404  # the key is now cached
    cache_key = ("api_key", api_key.api_key.prefix)
    held = lookup_cache.get(cache_key)
    assert held is not None and held.revoked_at is None
    with django_capture_on_commit_callbacks(execute=True):
        assert revoke(ApiKey.objects.filter(pk=api_key.api_key.pk)) == 1
    # What another process still holds: the key as it was before the revocation.
    lookup_cache.put(cache_key, held)
    response = client.get("/messages/999999")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_a_scope_change_is_seen_at_once_and_within_the_cache_bound_without_a_version(
    settings, sender, api_key, django_capture_on_commit_callbacks
):
    settings.API_LOOKUP_CACHE_SECONDS = 0.2
    client = api_for(api_key.secret)
    assert client.get("/messages/999999").status_code == 404
    key = ApiKey.objects.get(pk=api_key.api_key.pk)
    key.scopes = ["messages:send"]
    with django_capture_on_commit_callbacks(execute=True):
        key.save()  # admin's change form: the save signal bumps the version
    assert client.get("/messages/999999").status_code == 403

    # A change no signal reports (a bulk update) is seen once the cached row expires.
    ApiKey.objects.filter(pk=key.pk).update(scopes=["messages:read"])
    deadline = time.monotonic() + 30
    while client.post("/messages", send_body(sender)).status_code != 403:
        assert time.monotonic() < deadline, "the cached key outlived API_LOOKUP_CACHE_SECONDS"
        time.sleep(0.1)
    assert client.get("/messages/999999").status_code == 404


def test_with_redis_away_requests_are_served_and_the_limit_stops_trying_for_a_while(
    sender, api_key, settings, monkeypatch
):
    import socket

    from messaging import redis_client

    ApiKey.objects.filter(pk=api_key.api_key.pk).update(rate_limit_per_minute=1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    settings.REDIS_URL = f"redis://127.0.0.1:{closed}/0"
    monkeypatch.setattr(redis_client, "_down_until", 0.0)
    redis_client.get_redis.cache_clear()
    try:
        client = api_for(api_key.secret)
        # Over the limit of 1, and still served: the limit protects the engine, it is not
        # worth refusing requests for.
        assert [client.get("/messages/999999").status_code for _ in range(3)] == [404] * 3
        # The first failure tells the other callers to skip Redis for a moment.
        assert redis_client.seems_down()
    finally:
        redis_client.get_redis.cache_clear()

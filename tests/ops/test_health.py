import socket

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_health_is_ok_with_database_and_redis_up(client, settings):
    assert settings.REDIS_URL, "scripts/test sets REDIS_URL"
    response = client.get("/health/")
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("status", "database", "redis")} == {
        "status": "ok",
        "database": "ok",
        "redis": "ok",
    }
    # Each alert condition is reported, and none fires on an empty installation.
    assert set(body["alerts"]) >= {"campaign_paused", "token_failed", "webhook_silent"}
    assert body["alerts"]["token_failed"] == "ok"


def test_health_reports_redis_disabled_without_a_redis_url(client):
    with override_settings(REDIS_URL=""):
        response = client.get("/health/")
    assert response.status_code == 200
    assert response.json()["redis"] == "disabled"


def test_health_is_degraded_naming_redis_when_redis_is_unreachable(client):
    url = f"redis://:s3cret-password@127.0.0.1:{_closed_port()}/0"
    with override_settings(REDIS_URL=url):
        response = client.get("/health/")
    # Sending goes on without Redis (pacing on PostgreSQL): degraded, not down.
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("status", "database", "redis")} == {
        "status": "degraded",
        "database": "ok",
        "redis": "error",
    }
    assert b"s3cret-password" not in response.content


def test_health_shows_numbers_paced_by_postgres(client, sender):
    from messaging.models import PacingState

    assert client.get("/health/").json()["pacing"] == {
        "store": "redis",
        "numbers_on_postgresql": [],
    }
    PacingState.objects.create(sender=sender, mode=PacingState.Mode.POSTGRES)
    body = client.get("/health/").json()
    assert body["status"] == "degraded"
    assert body["pacing"] == {"store": "postgresql", "numbers_on_postgresql": [sender.pk]}


def test_the_admin_banner_reads_postgres_while_the_cache_is_away(admin_client, sender):
    from messaging.models import PacingState

    PacingState.objects.create(sender=sender, mode=PacingState.Mode.POSTGRES)
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    caches = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 1},
        }
    }
    with override_settings(CACHES=caches, REDIS_URL=url):  # Django resets its caches for this
        page = admin_client.get("/admin/")
    assert page.status_code == 200
    assert b"paced by PostgreSQL" in page.content


def test_health_needs_no_login_and_is_not_cached(client):
    response = client.get("/health/")
    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"]


def test_memory_reports_rss_and_peak_in_megabytes(admin_client):
    response = admin_client.get("/health/memory/")
    assert response.status_code == 200
    body = response.json()
    assert 1 < body["rss_mb"] <= body["peak_rss_mb"] < 64 * 1024

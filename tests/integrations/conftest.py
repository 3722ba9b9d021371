"""API tests: real keys through the real URL conf, the real sender against the simulator."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from messaging.integrations.keys import create_api_key
from messaging.integrations.models import ApiKey
from tests.engine.conftest import sim, simulator_process  # noqa: F401 (fixtures)
from tests.integrations.receiver import Receiver

ALL_SCOPES = list(ApiKey.Scope.values)


@pytest.fixture(autouse=True)
def _clean_redis(redis_client):
    """Empty rate-limit counters and pacing buckets for every test."""


@pytest.fixture(autouse=True)
def _batches_go_at_once(settings):
    """Tests deliver what they just wrote: a partial batch does not wait to fill (that wait
    has its own test in test_event_log.py)."""
    settings.EVENTS_BATCH_WAIT_SECONDS = 0


@pytest.fixture
def receiver():
    """A loopback HTTP receiver of outbound events (tests/integrations/receiver.py)."""
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def api_key(db):
    return create_api_key(name="crm", scopes=ALL_SCOPES)


class Api:
    """A JSON client for /api/v1/ that sends one key."""

    def __init__(self, secret: str | None) -> None:
        self.client = Client()
        self.secret = secret

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.secret}"} if self.secret else {}
        return {**headers, **(extra or {})}

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None):
        return self.client.post(
            f"/api/v1{path}",
            data=json.dumps(body if body is not None else {}),
            content_type="application/json",
            headers=self.headers(headers),
        )

    def get(self, path: str, **params: Any):
        return self.client.get(f"/api/v1{path}", params, headers=self.headers())


@pytest.fixture
def api(api_key) -> Api:
    return Api(api_key.secret)


def api_for(secret: str | None) -> Api:
    return Api(secret)

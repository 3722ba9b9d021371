"""Root fixtures: the test database is real PostgreSQL (started by scripts/test), Redis is real."""

from __future__ import annotations

import os

import pytest
from django.conf import settings

from tests import factories

pytest_plugins = ["messaging.simulator.pytest_fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    # Tests must never run against SQLite by accident: the queue relies on PostgreSQL.
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        raise pytest.UsageError(
            "DATABASE_URL must point at PostgreSQL: run the suite with scripts/test"
        )


@pytest.fixture(autouse=True)
def _fresh_event_subscriptions():
    """Each test reads the subscriptions it made: the per-process cache of the outbox
    publisher (messaging.integrations.events.publish) must not carry ids of a previous test's
    subscriptions, which a database flush removed without the delete signal."""
    from messaging.integrations.events.publish import forget_subscriptions

    forget_subscriptions()
    yield
    forget_subscriptions()


@pytest.fixture(autouse=True)
def _fresh_lookup_cache():
    """The API's per-process cache of keys, numbers and templates holds no previous test's
    rows (a database flush removes them without the signals that clear it)."""
    from messaging.integrations import lookup_cache

    lookup_cache.clear()
    yield
    lookup_cache.clear()


@pytest.fixture(autouse=True)
def _fresh_breaker_settings():
    """The breaker's per-process cache of campaign thresholds holds no previous test's rows (a
    database flush and Redis's flushdb bump no version)."""
    from messaging.policy.breaker import forget_settings

    forget_settings()
    yield
    forget_settings()


@pytest.fixture
def redis_client():
    """A real Redis connection on a clean database (REDIS_URL from scripts/services.sh)."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def account(db):
    return factories.AccountFactory()


@pytest.fixture
def sender(account):
    return factories.SenderFactory(account=account)


@pytest.fixture
def template(account):
    return factories.TemplateFactory(account=account)


@pytest.fixture(params=["postgres", "portable"])
def sql_path(request, settings):
    """Run a test on PostgreSQL's fast SQL and on the portable SQL SQLite gets (forced here)."""
    settings.FORCE_PORTABLE_SQL = request.param == "portable"
    return request.param

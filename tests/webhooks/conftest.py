"""Webhook test settings: a known app secret and verify token, no drain kicked by the view."""

from __future__ import annotations

import pytest

SECRET = "test-app-secret"
VERIFY_TOKEN = "verify-me-please"


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    settings.WHATSAPP_APP_SECRET = SECRET
    settings.WHATSAPP_VERIFY_TOKEN = VERIFY_TOKEN
    # Tests apply explicitly (drain), so what is stored and what is applied stays visible.
    settings.WEBHOOK_KICK_SECONDS = 0
    settings.AUTO_REPLY_ENABLED = False
    return settings


@pytest.fixture(autouse=True)
def fresh_refusal_log():
    """Each test starts outside the refusal log's quiet window, so its first refusal logs."""
    from webhooks.views import refusals

    refusals.last, refusals.unlogged = float("-inf"), 0
    return refusals

"""Templates synced from the Graph API (the simulator's template list, with paging)."""

from __future__ import annotations

import socket

import pytest
from django.core.management import CommandError, call_command

from campaigns.models import MessageTemplate
from messaging.simulator.templates import DEMO_TEMPLATES

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(fresh_simulator, settings):
    settings.WHATSAPP_API_BASE_URL = fresh_simulator.base_url
    settings.WHATSAPP_ACCESS_TOKEN = fresh_simulator.token
    return fresh_simulator


def test_every_page_of_templates_is_synced_and_marked_synced(api, capsys):
    call_command("sync_templates", "--waba-id", api.waba_id)

    synced = MessageTemplate.objects.filter(account__waba_id=api.waba_id)
    served = {(t["name"], t["language"]) for t in DEMO_TEMPLATES}
    assert set(synced.values_list("name", "language")) == served
    assert not synced.filter(synced_at__isnull=True).exists()
    paused = synced.get(name="winter_sale", language="en_US")
    assert paused.status == "PAUSED" and not paused.is_sendable
    assert "created" in capsys.readouterr().out

    call_command("sync_templates", "--waba-id", api.waba_id)  # idempotent
    assert MessageTemplate.objects.filter(account__waba_id=api.waba_id).count() == synced.count()


def test_fetch_follows_every_page(api):
    from messaging.graph_api import fetch_templates

    templates = fetch_templates(waba_id=api.waba_id, page_size=2)

    assert len(templates) == len(DEMO_TEMPLATES) > 2
    assert [t["id"] for t in templates] == [t["id"] for t in DEMO_TEMPLATES]


def test_an_unreachable_api_is_a_clear_error(settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.WHATSAPP_API_BASE_URL = f"http://127.0.0.1:{port}"

    with pytest.raises(CommandError, match="could not fetch templates of WABA 42"):
        call_command("sync_templates", "--waba-id", "42")
    assert MessageTemplate.objects.count() == 0

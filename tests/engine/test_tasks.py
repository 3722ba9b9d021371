"""The django-q2 entry points: locked slices, the dispatcher, the watchdog."""

from __future__ import annotations

from datetime import timedelta
from importlib import import_module

import pytest
from django.apps import apps
from django.core.management import call_command
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule

from campaigns.models import Campaign
from messaging import tasks
from messaging.maintenance import run_maintenance
from tests.engine.conftest import make_campaign

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_slice_sends_for_its_number(sim, sender, template, settings):
    settings.SENDER_SLICE_SECONDS = 5
    sender.rate_mps = 200
    sender.save()
    campaign = make_campaign(sender=sender, templates=[template], contacts=20)

    assert tasks.run_sender_slice(sender.pk, 0) == 20

    campaign.refresh_from_db()
    assert campaign.sent == 20


def test_a_slice_already_running_elsewhere_is_not_run_twice(sim, sender, template, redis_client):
    make_campaign(sender=sender, templates=[template], contacts=20)
    redis_client.set(f"wac:lock:slice:{sender.pk}:0", "another-worker", ex=60)

    assert tasks.run_sender_slice(sender.pk, 0) == 0
    assert sim.stats()["accepted"] == 0


def test_the_dispatcher_does_not_run_twice(redis_client, settings):
    settings.SENDER_SLICE_SECONDS = 0.1
    redis_client.set(tasks.DISPATCH_LOCK, "another-worker", ex=60)
    tasks.dispatch()  # returns at once, holding nothing
    assert redis_client.get(tasks.DISPATCH_LOCK) == b"another-worker"


@pytest.fixture
def queued_tasks(monkeypatch):
    """Tasks go to the ORM broker's queue instead of running inline (tests run sync)."""
    monkeypatch.setattr(Conf, "SYNC", False)


def test_kick_queues_one_slice_per_free_slot(sender, template, redis_client, queued_tasks):
    sender.rate_mps = 1000  # two slots at 900/s
    sender.save()
    make_campaign(sender=sender, templates=[template], contacts=1)
    redis_client.set(f"wac:lock:slice:{sender.pk}:1", "busy", ex=60)

    assert tasks.slots_for(1000) == 2 and tasks.slots_for(80) == 1
    assert tasks.kick_senders([sender.pk]) == 1
    assert OrmQ.objects.count() == 1


def test_the_watchdog_schedule_exists_and_restarts_the_dispatcher(redis_client, queued_tasks):
    # Transactional tests flush migration data, so create it as the migration does.
    import_module("messaging.migrations.0003_watchdog_schedule").create(apps, None)
    assert Schedule.objects.filter(func="messaging.tasks.watchdog", minutes=1).exists()

    tasks.watchdog()
    assert OrmQ.objects.count() == 1
    redis_client.set(tasks.DISPATCH_LOCK, "alive", ex=60)
    tasks.watchdog()
    assert OrmQ.objects.count() == 1


def test_a_scheduled_campaign_starts_when_its_time_comes(sender, template):
    soon = make_campaign(
        sender=sender,
        templates=[template],
        contacts=1,
        status="scheduled",
        start_at=timezone.now() - timedelta(seconds=1),
    )
    later = make_campaign(
        sender=sender,
        templates=[template],
        contacts=1,
        status="scheduled",
        start_at=timezone.now() + timedelta(hours=1),
    )

    assert run_maintenance()["started"] == 1

    soon.refresh_from_db()
    later.refresh_from_db()
    assert (soon.status, later.status) == (Campaign.Status.RUNNING, Campaign.Status.SCHEDULED)


def test_run_sender_starts_a_scheduled_campaign_on_time_and_sends_it(sim, sender, template):
    sender.rate_mps = 200
    sender.save()
    start_at = timezone.now() + timedelta(seconds=2)
    campaign = make_campaign(
        sender=sender, templates=[template], contacts=10, status="scheduled", start_at=start_at
    )

    call_command("run_sender", "--until-idle", "--max-seconds", "30")

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert timedelta(0) <= campaign.started_at - start_at < timedelta(seconds=1.5)
    assert sim.stats()["accepted"] == 10

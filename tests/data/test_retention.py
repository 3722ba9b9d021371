"""The retention purge: only what is past retention goes, never anything of a live campaign."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from campaigns.models import Campaign
from messaging.integrations.keys import create_api_key
from messaging.integrations.models import (
    EventLogCursor,
    EventSubscription,
    IdempotentRequest,
    MessageEventLog,
    OutboxEvent,
)
from messaging.models import OutboundMessage, OutboundStatus
from messaging.retention import purge, scheduled_purge
from messaging.services import TransitionError, requeue_failed
from tests.factories import CampaignFactory, OutboundMessageFactory
from webhooks.models import RawEvent, StatusLog

pytestmark = pytest.mark.django_db

NOW = timezone.now()
DAY = timedelta(days=1)
PARAMS = [{"type": "body", "parameters": [{"type": "text", "text": "Ann"}]}]


def _body(*, received_days_ago: float, applied_days_ago: float | None) -> RawEvent:
    event = RawEvent.objects.create(body=b"{}")
    applied = None if applied_days_ago is None else NOW - applied_days_ago * DAY
    RawEvent.objects.filter(pk=event.pk).update(
        received_at=NOW - received_days_ago * DAY, applied_at=applied
    )
    return event


def _log(outbound: OutboundMessage | None, *, days_ago: float) -> StatusLog:
    log = StatusLog.objects.create(
        wamid=f"wamid.{StatusLog.objects.count()}.{days_ago}",
        status="delivered",
        timestamp=NOW,
        outbound=outbound,
    )
    StatusLog.objects.filter(pk=log.pk).update(received_at=NOW - days_ago * DAY)
    return log


def _campaign(status: str, finished_days_ago: float | None, rows: int = 3) -> Campaign:
    finished = None if finished_days_ago is None else NOW - finished_days_ago * DAY
    campaign = CampaignFactory(status=status, finished_at=finished, total=rows, failed=rows)
    for _ in range(rows):
        OutboundMessageFactory(
            campaign=campaign, parameters=PARAMS, status=OutboundStatus.FAILED, error_code=131000
        )
    return campaign


def _event(subscription, state: int, *, days_ago: float) -> OutboxEvent:
    event = OutboxEvent.objects.create(
        subscription=subscription, event_type="message.sent", payload={}, state=state
    )
    OutboxEvent.objects.filter(pk=event.pk).update(created_at=NOW - days_ago * DAY)
    return event


def _log_entry(subscription, *, read: bool, hours_ago: float) -> MessageEventLog:
    """A message event log entry the subscription's cursor has passed (read) or not."""
    horizon = EventLogCursor.objects.get(subscription=subscription).xid
    entry = MessageEventLog.objects.create(
        xid=horizon - 5 if read else horizon + 5, ids=[1], statuses=[3], size=1
    )
    MessageEventLog.objects.filter(pk=entry.pk).update(created_at=NOW - timedelta(hours=hours_ago))
    return entry


def _key_answer(api_key, *, hours_ago: float) -> IdempotentRequest:
    row = IdempotentRequest.objects.create(
        api_key=api_key, key=f"k{hours_ago}", fingerprint="f", response_status=202
    )
    IdempotentRequest.objects.filter(pk=row.pk).update(created_at=NOW - timedelta(hours=hours_ago))
    return row


@pytest.fixture
def data(settings):
    settings.RETENTION_WEBHOOK_BODY_DAYS = 7
    settings.RETENTION_STATUS_LOG_DAYS = 90
    settings.RETENTION_FINISHED_CAMPAIGN_DAYS = 30
    settings.RETENTION_OUTBOUND_EVENT_DAYS = 3
    settings.API_IDEMPOTENCY_HOURS = 48
    settings.RETENTION_EVENT_LOG_HOURS = 1
    subscription = EventSubscription.objects.create(name="crm", url="http://x.test/", secret="s")
    api_key = create_api_key(name="crm", scopes=[]).api_key
    S = OutboxEvent.State
    old_done = _campaign(Campaign.Status.COMPLETED, 31)
    recent_done = _campaign(Campaign.Status.CANCELLED, 29)
    # Running for months: its rows and statuses are all old, and must all stay.
    live = _campaign(Campaign.Status.RUNNING, None)
    paused = _campaign(Campaign.Status.PAUSED, None)
    return {
        "bodies": {
            "old_applied": _body(received_days_ago=10, applied_days_ago=9),
            "applied_just_inside": _body(received_days_ago=8, applied_days_ago=6.9),
            "old_pending": _body(received_days_ago=30, applied_days_ago=None),
            "new": _body(received_days_ago=0, applied_days_ago=0),
        },
        "logs": {
            "old_done": _log(old_done.messages.first(), days_ago=91),
            "old_unmatched": _log(None, days_ago=120),
            "old_live": _log(live.messages.first(), days_ago=100),
            "old_paused": _log(paused.messages.first(), days_ago=100),
            "recent_done": _log(old_done.messages.last(), days_ago=89),
        },
        "campaigns": {"old": old_done, "recent": recent_done, "live": live, "paused": paused},
        "events": {
            "old_delivered": _event(subscription, S.DELIVERED, days_ago=4),
            "old_pending": _event(subscription, S.PENDING, days_ago=4),
            "old_dead": _event(subscription, S.DEAD, days_ago=4),
            "recent_delivered": _event(subscription, S.DELIVERED, days_ago=2),
        },
        "event_log": {
            "old_read": _log_entry(subscription, read=True, hours_ago=2),
            "recent_read": _log_entry(subscription, read=True, hours_ago=0.5),
            "old_unread": _log_entry(subscription, read=False, hours_ago=2),
        },
        "keys": {
            "old": _key_answer(api_key, hours_ago=49),
            "recent": _key_answer(api_key, hours_ago=47),
        },
    }


def _remaining_events_and_keys(data):
    return (
        {k for k, v in data["events"].items() if OutboxEvent.objects.filter(pk=v.pk).exists()},
        {k for k, v in data["keys"].items() if IdempotentRequest.objects.filter(pk=v.pk).exists()},
    )


def _remaining(data):
    return (
        {k for k, v in data["bodies"].items() if RawEvent.objects.filter(pk=v.pk).exists()},
        {k for k, v in data["logs"].items() if StatusLog.objects.filter(pk=v.pk).exists()},
        {k for k, c in data["campaigns"].items() if not c.messages.filter(parameters=[]).exists()},
    )


def test_purge_removes_only_what_is_past_retention(data):
    report = purge(batch_size=1)
    assert report.complete
    assert report.counts == {
        "webhook_bodies": 1,
        "status_logs": 2,
        "queue_parameters": 3,
        "outbound_events": 1,
        "event_log": 1,
        "idempotency_keys": 1,
    }
    remaining_log = MessageEventLog.objects.filter(
        pk__in=[e.pk for e in data["event_log"].values()]
    )
    assert {k for k, e in data["event_log"].items() if remaining_log.filter(pk=e.pk).exists()} == {
        "recent_read",
        "old_unread",
    }
    # Pending events and dead letters stay whatever their age: staff re-deliver those.
    assert _remaining_events_and_keys(data) == (
        {"old_pending", "old_dead", "recent_delivered"},
        {"recent"},
    )
    bodies, logs, with_parameters = _remaining(data)
    assert bodies == {"applied_just_inside", "old_pending", "new"}
    assert logs == {"old_live", "old_paused", "recent_done"}
    assert with_parameters == {"recent", "live", "paused"}
    old = Campaign.objects.get(pk=data["campaigns"]["old"].pk)
    assert old.parameters_purged_at is not None
    # Rows stay, and with them the counters' truth.
    assert old.messages.count() == old.total == 3
    # A second run finds nothing (the purged campaign is not read again).
    assert not any(purge().counts.values())


def test_dry_run_counts_the_same_and_changes_nothing(data):
    out = StringIO()
    call_command("purge", "--dry-run", stdout=out)
    assert out.getvalue().splitlines() == [
        "would remove 1 applied webhook bodies",
        "would remove 2 status log rows",
        "would remove 3 queue rows' rendered parameters",
        "would remove 1 delivered outbound events",
        "would remove 1 message event log entries read by every subscription",
        "would remove 1 expired idempotency keys",
    ]
    assert _remaining(data) == (set(data["bodies"]), set(data["logs"]), set(data["campaigns"]))
    out = StringIO()
    call_command("purge", stdout=out)
    assert "removed 2 status log rows" in out.getvalue()


def test_a_purged_campaign_cannot_be_requeued(data):
    purge()
    old = data["campaigns"]["old"]
    with pytest.raises(TransitionError, match="purged"):
        requeue_failed(campaign_id=old.pk)
    assert requeue_failed(campaign_id=data["campaigns"]["recent"].pk) == 3


def test_a_time_budget_stops_early_and_the_next_run_carries_on(data):
    first = purge(time_budget=0)
    assert not first.complete and sum(first.counts.values()) == 0
    assert sum(scheduled_purge().values()) == 9


def test_the_schedule_exists():
    schedule = Schedule.objects.get(func="messaging.retention.scheduled_purge")
    assert schedule.schedule_type == Schedule.MINUTES and schedule.repeats == -1


def test_purge_refuses_a_bad_batch_size():
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="--batch-size 0: must be between 1 and 100000"):
        call_command("purge", "--batch-size", "0")


def test_a_purged_body_takes_its_rejected_items_along():
    from webhooks.models import RejectedWebhookItem

    body = _body(received_days_ago=30, applied_days_ago=30)
    RejectedWebhookItem.objects.create(raw_event=body, where="entry[0]", reason="x", item="{}")
    purge()
    assert not RawEvent.objects.filter(pk=body.pk).exists()
    assert not RejectedWebhookItem.objects.exists()

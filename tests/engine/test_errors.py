"""Each error category does what messaging/errors.py says, end to end through the simulator."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Campaign, Suppression
from messaging.models import OutboundMessage, OutboundStatus
from messaging.sender import run_number
from messaging.services import requeue_failed
from tests import factories
from tests.engine.conftest import make_campaign

pytestmark = pytest.mark.django_db(transaction=True)


def send(sender, seconds=15):
    return run_number(sender.pk, worker_id="t", max_seconds=seconds, until_idle=True)


def rows(campaign):
    return OutboundMessage.objects.filter(campaign=campaign)


@pytest.fixture
def fast_sender(sender):
    sender.rate_mps = 400
    sender.save()
    return sender


@pytest.mark.parametrize(
    ("code", "category"), [(131026, "recipient"), (132005, "recipient"), (131009, "payload")]
)
def test_permanent_errors_fail_the_message_without_retry(
    sim, fast_sender, template, code, category
):
    sim.configure(error_rates={str(code): 1.0})
    campaign = make_campaign(sender=fast_sender, templates=[template], contacts=10)

    send(fast_sender)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert campaign.failed == 10 and campaign.sent == 0
    assert set(
        rows(campaign).values_list("status", "error_code", "error_category", "attempts")
    ) == {(OutboundStatus.FAILED, code, category, 1)}
    assert sim.stats()["send_requests"] == 10


def test_a_user_who_stopped_marketing_is_suppressed(sim, fast_sender, template):
    sim.configure(error_rates={"131050": 1.0})
    campaign = make_campaign(sender=fast_sender, templates=[template], contacts=3)

    send(fast_sender)

    phones = set(rows(campaign).values_list("phone", flat=True))
    assert set(Suppression.objects.values_list("phone", flat=True)) == phones


@pytest.mark.parametrize("code", [132001, 132016])
def test_a_missing_or_disabled_template_pauses_the_campaign(sim, fast_sender, template, code):
    sim.configure(error_rates={str(code): 1.0})
    campaign = make_campaign(sender=fast_sender, templates=[template], contacts=50)

    send(fast_sender)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert str(code) in campaign.pause_reason
    # Only what was in flight when the signal came was tried; the rest waits for staff.
    assert rows(campaign).filter(status=OutboundStatus.QUEUED).count() > 0
    assert rows(campaign).filter(status=OutboundStatus.SENDING).count() == 0
    template.refresh_from_db()
    assert template.status in ("MISSING", "DISABLED")


def test_a_spam_signal_pauses_the_campaign_and_keeps_its_messages(sim, fast_sender, template):
    sim.configure(error_rates={"131048": 1.0})
    campaign = make_campaign(sender=fast_sender, templates=[template], contacts=40)

    send(fast_sender)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert campaign.failed == 0
    assert rows(campaign).filter(status=OutboundStatus.FAILED).count() == 0
    assert rows(campaign).filter(status__in=[0, 1]).count() == 40


def test_an_auth_error_pauses_every_campaign_of_the_account(sim, fast_sender, template, account):
    other_number = factories.SenderFactory(account=account)
    other = make_campaign(sender=other_number, templates=[template], contacts=5)
    unrelated = make_campaign(sender=factories.SenderFactory(), templates=[template], contacts=5)
    campaign = make_campaign(sender=fast_sender, templates=[template], contacts=20)
    sim.configure(token="a-rotated-token")  # our token is now wrong: 190

    send(fast_sender)

    for c in (campaign, other):
        c.refresh_from_db()
        assert c.status == Campaign.Status.PAUSED
        assert "auth" in c.pause_reason
    unrelated.refresh_from_db()
    assert unrelated.status == Campaign.Status.RUNNING
    account.refresh_from_db()
    assert account.auth_failed_at is not None
    assert rows(campaign).filter(status=OutboundStatus.FAILED).count() == 0


def test_transient_errors_retry_on_the_schedule_then_dead_letter(
    sim, fast_sender, template, settings
):
    settings.SENDER_MAX_ATTEMPTS = 3
    sim.configure(error_rates={"133004": 1.0})
    campaign = make_campaign(sender=fast_sender, templates=[template], contacts=5)

    send(fast_sender, seconds=30)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert campaign.failed == 5
    assert set(rows(campaign).values_list("status", "attempts", "error_code")) == {
        (OutboundStatus.FAILED, 3, 133004)
    }
    assert sim.stats()["send_requests"] == 15

    # Staff re-drive the dead letters once the API is healthy again.
    sim.configure(error_rates={})
    assert requeue_failed(campaign_id=campaign.pk) == 5
    send(fast_sender)
    campaign.refresh_from_db()
    assert (campaign.status, campaign.sent, campaign.failed) == (Campaign.Status.COMPLETED, 5, 0)


def test_an_unknown_code_is_retried_a_bounded_number_of_times(sim, fast_sender, template, settings):
    settings.SENDER_MAX_ATTEMPTS = 6
    sim.configure(error_rates={"999999": 1.0})
    campaign = make_campaign(sender=fast_sender, templates=[template], contacts=2)

    send(fast_sender, seconds=30)

    assert set(rows(campaign).values_list("status", "attempts", "error_category")) == {
        (OutboundStatus.FAILED, 3, "unknown")
    }


def test_the_marketing_cap_retries_no_sooner_than_24_hours(sim, fast_sender, template):
    sim.configure(error_rates={"131049": 1.0})
    campaign = make_campaign(sender=fast_sender, templates=[template], contacts=3)

    send(fast_sender, seconds=3)

    soonest = timezone.now() + timedelta(hours=23, minutes=59)
    assert (
        rows(campaign).filter(status=OutboundStatus.RETRY, next_attempt_at__gte=soonest).count()
        == 3
    )
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING


def test_the_marketing_cap_fails_when_the_campaign_expires_first(sim, fast_sender, template):
    sim.configure(error_rates={"131049": 1.0})
    valid_until = timezone.now() + timedelta(hours=2)
    campaign = make_campaign(
        sender=fast_sender, templates=[template], contacts=3, valid_until=valid_until
    )

    send(fast_sender)

    assert rows(campaign).filter(status=OutboundStatus.FAILED, error_code=131049).count() == 3


def test_pair_rate_limit_retries_only_that_recipient(sim, fast_sender, template):
    sim.configure(error_rates={"131056": 1.0})
    campaign = make_campaign(sender=fast_sender, templates=[template], contacts=2)

    send(fast_sender, seconds=2)

    retry = rows(campaign).filter(status=OutboundStatus.RETRY, error_category="pair_rate")
    assert retry.count() == 2


def test_throttling_slows_the_number_and_the_rate_is_remembered(
    sim, fast_sender, template, redis_client
):
    # The API allows 100/s; we believe 400 (target 360): the 130429 answers must slow us down.
    sim.configure(mps=100)
    campaign = make_campaign(sender=fast_sender, templates=[template], contacts=300)

    send(fast_sender, seconds=30)

    fast_sender.refresh_from_db()
    target = 400 * 0.9
    assert fast_sender.learned_rate is not None and fast_sender.learned_rate < target
    campaign.refresh_from_db()
    assert sim.stats()["errors"].get("130429", 0) > 0
    assert campaign.sent == 300  # throttled messages were retried, none lost
    assert rows(campaign).filter(status=OutboundStatus.ACCEPTED).count() == 300
    assert rows(campaign).filter(attempts__gt=1).count() == 0  # a throttle is not an attempt

    # A restart (even of Redis) resumes from the learned rate, not the configured one.
    redis_client.flushdb()
    from messaging.sender import NumberSender

    restarted = NumberSender(fast_sender.pk, worker_id="t2")
    assert restarted.bucket.reserve(1).rate == pytest.approx(fast_sender.learned_rate)

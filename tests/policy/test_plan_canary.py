"""The launch plan times the canary: its rows first (at its own rate), then the verdict's wait,
then the rest; before the canary begins, while it runs, and from create_campaign --plan."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from campaigns.models import Campaign
from messaging.models import OutboundMessage
from messaging.models import OutboundStatus as S
from messaging.policy import canary
from messaging.policy.plan import plan_campaign
from tests import factories
from tests.policy.helpers import campaign_to, phones

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 1, 6, 10, 0, tzinfo=UTC)
WAIT = timedelta(seconds=900)  # POLICY_CANARY_WAIT_SECONDS, set below


@pytest.fixture(autouse=True)
def _wait(settings):
    settings.POLICY_CANARY_WAIT_SECONDS = WAIT.total_seconds()


def _close(a: datetime | None, b: datetime) -> bool:
    return a is not None and abs(a - b) < timedelta(milliseconds=1)


def _draft(sender, template, count=100, **fields):
    fields.setdefault("canary_percent", 10)
    fields.setdefault("canary_rate", 1)
    return campaign_to(sender, template, phones("+35191600", count), status="draft", **fields)


def test_a_draft_plan_sends_the_canary_then_waits_for_the_verdict(sender, template):
    campaign = _draft(sender, template)
    campaign.canary_percent = 0
    without = plan_campaign(campaign, now=NOW)
    campaign.canary_percent = 10

    plan = plan_campaign(campaign, now=NOW)

    line = plan.canary_line
    assert line is not None
    assert (line.size, line.held, line.rate) == (10, 90, 1)
    # 10 canary rows one second apart (its own rate, slower than the number's 72 msg/s).
    assert line.sent_by == NOW + timedelta(seconds=9)
    assert line.verdict_by == line.sent_by + WAIT
    # The rest goes after the verdict, at the number's rate: the ETA includes the wait.
    assert _close(plan.eta, line.verdict_by + timedelta(seconds=89 / plan.rate))
    assert without.eta < NOW + timedelta(seconds=2)
    assert plan.to_send == 100 and [w.count for w in plan.waves] == [100]
    assert "goes first" in plan.canary and "include that wait" in plan.canary
    timeline = plan.as_json()["canary_timeline"]
    assert timeline["size"] == 10 and timeline["held"] == 90
    assert timeline["verdict_by"] == line.verdict_by.isoformat()

    # The canary the engine then picks is the one the plan timed.
    Campaign.objects.filter(pk=campaign.pk).update(status="running")
    assert canary.begin(Campaign.objects.get(pk=campaign.pk), now=NOW) == line.size


def test_a_running_canary_is_timed_from_its_own_rows(sender, template):
    campaign = _draft(sender, template, canary_rate=2)
    Campaign.objects.filter(pk=campaign.pk).update(status="running")
    campaign.refresh_from_db()
    canary.begin(campaign, now=NOW)
    campaign.refresh_from_db()

    plan = plan_campaign(campaign, now=NOW)

    line = plan.canary_line
    assert line is not None and (line.size, line.held) == (10, 90)
    assert line.sent_by == NOW + timedelta(seconds=4.5)  # its rows' own next_attempt_at
    assert line.verdict_by == line.sent_by + WAIT
    assert _close(plan.eta, line.verdict_by + timedelta(seconds=89 / plan.rate))
    assert plan.canary.startswith("running: ")

    # Every canary row went, the last at NOW - 5 min: the verdict is 10 minutes away.
    last = NOW - timedelta(minutes=5)
    rows = OutboundMessage.objects.filter(campaign=campaign)
    chosen = list(rows.exclude(next_attempt_at=canary.HOLD).order_by("id"))
    rows.filter(pk__in=[m.pk for m in chosen[:-1]]).update(
        status=S.DELIVERED, accepted_at=last - timedelta(seconds=30)
    )
    rows.filter(pk=chosen[-1].pk).update(status=S.DELIVERED, accepted_at=last)

    plan = plan_campaign(campaign, now=NOW)

    line = plan.canary_line
    assert line is not None and (line.size, line.held) == (0, 90)
    assert (line.sent_by, line.verdict_by) == (last, last + WAIT)
    assert plan.waves[0].starts == last + WAIT
    assert plan.to_send == 90


def test_a_canary_row_waiting_a_day_to_retry_does_not_hold_the_verdict(sender, template):
    campaign = _draft(sender, template, canary_rate=2)
    Campaign.objects.filter(pk=campaign.pk).update(status="running")
    campaign.refresh_from_db()
    canary.begin(campaign, now=NOW)
    campaign.refresh_from_db()
    rows = OutboundMessage.objects.filter(campaign=campaign)
    chosen = list(rows.exclude(next_attempt_at=canary.HOLD).order_by("id"))
    last = NOW - timedelta(minutes=1)
    rows.filter(pk__in=[m.pk for m in chosen[1:]]).update(status=S.DELIVERED, accepted_at=last)
    # The first got 131049: it counts as failed now (canary.measure), its retry is a day away.
    rows.filter(pk=chosen[0].pk).update(
        status=S.RETRY, error_code=131049, next_attempt_at=NOW + timedelta(hours=24)
    )

    plan = plan_campaign(campaign, now=NOW)

    line = plan.canary_line
    assert line is not None and (line.size, line.held) == (0, 90)
    assert line.verdict_by == last + WAIT  # not a day later
    assert plan.waves[0].starts == last + WAIT


def test_a_canary_that_cannot_end_before_valid_until_holds_the_rest(sender, template):
    # 50 canary rows at 0.01 msg/s take over 80 minutes; the campaign ends in an hour, before
    # the verdict could come.
    campaign = _draft(
        sender, template, count=500, canary_rate=0.01, valid_until=NOW + timedelta(hours=1)
    )

    plan = plan_campaign(campaign, now=NOW)

    line = plan.canary_line
    assert line is not None and line.sent_by == NOW + timedelta(seconds=3500)
    assert line.verdict_by is not None and line.verdict_by > campaign.valid_until
    # Canary row k is due (k - 1) × 100 s after the start: 36 of them go within the hour.
    assert plan.to_send == 36
    assert plan.skipped["rate"] == 14
    assert plan.skipped["canary"] == 450


def test_create_campaign_plan_json_has_the_canary_timeline(sender, tmp_path):
    template = factories.TemplateFactory(account=sender.account, name="plain", components=[])
    path = tmp_path / "list.csv"
    path.write_text("phone\n" + "\n".join(phones("+35191700", 40)) + "\n")

    out = StringIO()
    call_command(
        "create_campaign",
        "--name=Canary",
        f"--csv={path}",
        f"--sender={sender.phone_number_id}",
        f"--template={template.name}",
        "--canary=5%",
        "--canary-rate=0.5",
        "--plan",
        "--json",
        stdout=out,
    )

    plan = json.loads(out.getvalue())["plan"]
    timeline = plan["canary_timeline"]
    assert (timeline["size"], timeline["held"], timeline["rate_per_second"]) == (2, 38, 0.5)
    start = datetime.fromisoformat(plan["start"])
    sent_by = datetime.fromisoformat(timeline["sent_by"])
    verdict_by = datetime.fromisoformat(timeline["verdict_by"])
    assert sent_by == start + timedelta(seconds=2)
    assert verdict_by == sent_by + WAIT
    assert datetime.fromisoformat(plan["eta"]) > verdict_by
    assert not Campaign.objects.exists()

"""The one list of a campaign's policy fields (messaging.policy.fields.POLICY_FIELDS) and its
sibling for the template winner (WINNER_FIELDS): a copy carries every one of them, and no
policy- or winner-looking field of Campaign is left out of the lists."""

from __future__ import annotations

from datetime import time, timedelta

import pytest
from django.utils import timezone

from campaigns.models import Campaign
from messaging.models import OutboundStatus as S
from messaging.policy.fields import (
    COPIED_FIELDS,
    POLICY_FIELDS,
    POLICY_STATE_FIELDS,
    WINNER_FIELDS,
    WINNER_STATE_FIELDS,
)
from messaging.services import duplicate_campaign, start_campaign
from tests import factories
from tests.engine.conftest import make_campaign

pytestmark = pytest.mark.django_db

# What names a send-policy field of Campaign (the policy's settings and the canary's state).
POLICY_PREFIXES = ("valid_", "window_", "frequency_", "canary_", "max_failure", "max_opt_out")
WINNER_PREFIX = "winner_"


def copied_values() -> dict[str, object]:
    """A value other than the default for every copied field (policy and winner)."""
    return {
        "valid_until": timezone.now() + timedelta(days=2),
        "window_start": time(9, 0),
        "window_end": time(20, 0),
        "window_days": "mon-fri",
        "frequency_cap": "3/7d",
        "canary_percent": 10.0,
        "canary_rate": 2.0,
        "max_failure_rate": 0.15,
        "max_opt_out_rate": 0.01,
        "winner_measure": "read rate",
        "winner_test_share": 30,
        "winner_min_delivered": 50,
        "winner_wait_minutes": 60,
    }


def winner_state() -> dict[str, object]:
    """What a decided template winner leaves on its campaign, never copied."""
    return {
        "winner_waiting_since": timezone.now() - timedelta(hours=2),
        "winner_decided_at": timezone.now() - timedelta(hours=1),
        "winner_decision": "Automatic winner promo_1 by read rate",
    }


def test_every_policy_looking_field_is_listed_once():
    names = {f.name for f in Campaign._meta.get_fields() if f.name.startswith(POLICY_PREFIXES)}
    listed = set(POLICY_FIELDS) | set(POLICY_STATE_FIELDS)
    assert names == listed, "add the new field to POLICY_FIELDS (copied) or POLICY_STATE_FIELDS"
    assert not set(POLICY_FIELDS) & set(POLICY_STATE_FIELDS)
    winner = {f.name for f in Campaign._meta.get_fields() if f.name.startswith(WINNER_PREFIX)}
    assert winner == set(WINNER_FIELDS) | set(WINNER_STATE_FIELDS), (
        "add the new field to WINNER_FIELDS (copied) or WINNER_STATE_FIELDS"
    )
    assert not set(WINNER_FIELDS) & set(WINNER_STATE_FIELDS)
    assert set(COPIED_FIELDS) == set(POLICY_FIELDS) | set(WINNER_FIELDS)
    # The test's own values cover the lists, so a new field needs a value here too.
    assert set(copied_values()) == set(COPIED_FIELDS)
    assert set(winner_state()) == set(WINNER_STATE_FIELDS)


def test_a_copy_carries_every_setting_and_none_of_the_canary_or_winner_state(sender, template):
    values = copied_values()
    source = make_campaign(sender=sender, templates=[template], contacts=20, status="draft")
    Campaign.objects.filter(pk=source.pk).update(**values, **winner_state())
    start_campaign(campaign_id=source.pk)  # its canary begins: state the copy must not carry
    source.refresh_from_db()
    assert (source.canary_state, source.canary_size) == ("running", 2)

    copy = duplicate_campaign(campaign_id=source.pk)

    copy.refresh_from_db()
    assert {name: getattr(copy, name) for name in COPIED_FIELDS} == values
    assert (copy.canary_state, copy.canary_size, copy.canary_report) == ("", 0, {})
    assert (copy.winner_waiting_since, copy.winner_decided_at, copy.winner_decision) == (
        None,
        None,
        "",
    )
    assert copy.canary_done_at is None
    # The copy's rows are queued afresh, none held: its own canary begins when it starts.
    assert set(copy.messages.values_list("status", "error_category")) == {(S.QUEUED, "")}
    start_campaign(campaign_id=copy.pk)
    copy.refresh_from_db()
    assert (copy.canary_state, copy.canary_size) == ("running", 2)


def test_a_copy_leaves_out_a_valid_until_already_past(sender, template):
    source = factories.CampaignFactory(
        sender=sender,
        status="completed",
        valid_until=timezone.now() - timedelta(hours=1),
        window_start=time(8, 0),
        window_end=time(18, 0),
    )
    copy = duplicate_campaign(campaign_id=source.pk)
    assert copy.valid_until is None  # it would expire every row before the first send
    assert (copy.window_start, copy.window_end) == (time(8, 0), time(18, 0))

"""A transactional message's own validity (ttl_seconds / valid_until): not sent by then, it
ends `expired`, is counted, reported, and never reaches the simulator."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from campaigns.models import Campaign
from messaging.integrations.events.tasks import run_delivery
from messaging.integrations.models import EventSubscription
from messaging.maintenance import run_maintenance
from messaging.models import OutboundMessage
from messaging.models import OutboundStatus as S
from messaging.policy import gate
from messaging.policy.windows import Window
from messaging.queue import ClaimedMessage
from messaging.sender import run_number
from tests.integrations.test_api_send import template_body
from tests.webhooks.payloads import status, statuses_body
from webhooks.drain import apply_parsed
from webhooks.payload import parse

pytestmark = pytest.mark.django_db(transaction=True)


def _refusal(answer) -> tuple[int, str, str | None]:
    error = answer.json()["error"]
    return answer.status_code, error["code"], error["field"]


def test_a_ttl_or_valid_until_is_kept_and_bad_ones_are_refused(api, sender, template):
    before = timezone.now()
    answer = api.post("/messages", template_body(sender, template, ttl_seconds=30))
    assert answer.status_code == 202, answer.json()
    row = OutboundMessage.objects.get(pk=answer.json()["id"])
    assert (
        before + timedelta(seconds=30) <= row.valid_until <= timezone.now() + timedelta(seconds=30)
    )
    shown = datetime.fromisoformat(answer.json()["valid_until"])
    assert abs(shown - row.valid_until) < timedelta(milliseconds=1)  # JSON keeps milliseconds

    until = (timezone.now() + timedelta(hours=2)).replace(microsecond=0)
    body = template_body(sender, template, to="+14155550111", valid_until=until.isoformat())
    answer = api.post("/messages", body)
    assert answer.status_code == 202
    assert OutboundMessage.objects.get(pk=answer.json()["id"]).valid_until == until

    past = (timezone.now() - timedelta(seconds=5)).isoformat()
    assert _refusal(api.post("/messages", template_body(sender, template, valid_until=past))) == (
        400,
        "expired",
        "valid_until",
    )
    both = template_body(sender, template, ttl_seconds=5, valid_until=until.isoformat())
    assert _refusal(api.post("/messages", both))[:2] == (400, "invalid_validity")
    naive = template_body(sender, template, valid_until="2030-01-01T00:00:00")
    assert _refusal(api.post("/messages", naive)) == (400, "invalid_validity", "valid_until")
    for ttl in (0, -3, 31 * 86400):
        refused = _refusal(api.post("/messages", template_body(sender, template, ttl_seconds=ttl)))
        assert refused == (400, "invalid_validity", "ttl_seconds")
    assert OutboundMessage.objects.count() == 2


def test_a_batch_ttl_applies_to_messages_without_their_own(api, sender, template):
    item = template_body(sender, template)
    del item["sender"]
    own = {**item, "to": "+14155550102", "ttl_seconds": 600}
    bad = {**item, "to": "+14155550103", "ttl_seconds": 0}
    answer = api.post(
        "/messages/batch",
        {"sender": sender.phone_number_id, "ttl_seconds": 60, "messages": [item, own, bad]},
    )
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert results[2]["error"]["code"] == "invalid_validity"
    assert results[2]["error"]["field"] == "messages[2].ttl_seconds"
    first, second = (
        OutboundMessage.objects.get(pk=r["message"]["id"]).valid_until for r in results[:2]
    )
    now = timezone.now()
    assert now + timedelta(seconds=50) < first < now + timedelta(seconds=61)
    assert now + timedelta(seconds=590) < second < now + timedelta(seconds=601)


def test_a_message_not_sent_within_its_ttl_expires_and_is_never_sent(
    sim, api, sender, template, receiver
):
    """Its number's sender came too late: the claim's screen expires it; the fresh one goes."""
    EventSubscription.objects.create(
        name="crm",
        url=receiver.url,
        secret="s",
        event_types=["message.expired", "message.accepted"],
    )
    late = api.post("/messages", template_body(sender, template, ttl_seconds=1)).json()
    fresh = api.post(
        "/messages", template_body(sender, template, to="+14155550111", ttl_seconds=120)
    ).json()
    time.sleep(1.2)
    run_number(sender.pk, worker_id="t", max_seconds=20, until_idle=True)
    row = OutboundMessage.objects.get(pk=late["id"])
    assert row.status == S.EXPIRED and row.error_detail == gate.ROW_EXPIRED_DETAIL
    assert row.attempts == 0  # the claim's attempt was given back: it never went
    assert OutboundMessage.objects.get(pk=fresh["id"]).status == S.ACCEPTED
    stats = sim.stats()
    assert stats["accepted"] == 1
    assert stats["recipients"]["distinct"] == 1  # only the fresh one reached the simulator
    stream = Campaign.objects.get(pk=row.campaign_id)
    assert stream.expired == 1 and stream.sent == 1
    assert api.get(f"/messages/{late['id']}").json()["status"] == "expired"
    run_delivery(seconds=20)
    got = {(e["type"], e["data"]["message_id"]) for e in receiver.events()}
    assert got == {("message.expired", late["id"]), ("message.accepted", fresh["id"])}


def test_maintenance_expires_rows_no_claim_reached_in_time(api, sender, template, receiver):
    """The stream is paused (an error answer): nothing claims; the deadline still holds."""
    EventSubscription.objects.create(name="crm", url=receiver.url, secret="s")
    sent = api.post("/messages", template_body(sender, template, ttl_seconds=1)).json()
    keeps = api.post(
        "/messages", template_body(sender, template, to="+14155550111", ttl_seconds=600)
    ).json()
    no_limit = api.post("/messages", template_body(sender, template, to="+14155550112")).json()
    Campaign.objects.filter(pk=sent["campaign_id"]).update(
        status=Campaign.Status.PAUSED, pause_reason="auth error 190"
    )
    time.sleep(1.1)
    run_maintenance()
    states = dict(OutboundMessage.objects.values_list("pk", "status"))
    assert states == {sent["id"]: S.EXPIRED, keeps["id"]: S.QUEUED, no_limit["id"]: S.QUEUED}
    assert Campaign.objects.get(pk=sent["campaign_id"]).expired == 1
    run_delivery(seconds=20)
    expired = [e for e in receiver.events() if e["type"] == "message.expired"]
    assert [e["data"]["message_id"] for e in expired] == [sent["id"]]
    assert gate.expire_due_rows() == 0  # idempotent


def test_a_wait_that_ends_after_the_rows_deadline_expires_it(sender, template):
    """The campaigns' rule, per row: a closed window that opens after the row's own
    valid_until expires the row at the claim; a row without one waits."""
    now = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)  # a Monday, 03:00 UTC
    rules = gate.CampaignRules(1, window=Window(datetime.min.time().replace(hour=9), _h(17)))
    soon = ClaimedMessage(1, 1, template.pk, "+442071838750", [], 1, S.QUEUED, now + _td(1))
    later = ClaimedMessage(2, 1, template.pk, "+442071838751", [], 1, S.QUEUED, now + _td(12))
    free = ClaimedMessage(3, 1, template.pk, "+442071838752", [], 1, S.QUEUED)
    gone = ClaimedMessage(4, 1, template.pk, "+442071838753", [], 1, S.QUEUED, now - _td(1))
    go, held = gate.screen([soon, later, free, gone], rules, now=now)
    assert go == []
    by_id = {h.id: h for h in held}
    assert by_id[1].status == S.EXPIRED and gate.ROW_EXPIRED_DETAIL in by_id[1].error_detail
    assert by_id[2].status == S.QUEUED and by_id[2].error_category == gate.WAIT_WINDOW
    assert by_id[3].status == S.QUEUED
    assert by_id[4].status == S.EXPIRED and by_id[4].error_detail == gate.ROW_EXPIRED_DETAIL
    # With a campaign deadline earlier than the row's, the campaign's detail is given.
    strict = gate.CampaignRules(1, valid_until=now + _td(2), window=rules.window)
    _, held = gate.screen([later], strict, now=now)
    assert held[0].status == S.EXPIRED and held[0].error_detail.endswith(gate.EXPIRED_DETAIL)


def test_a_retryable_failure_after_the_rows_deadline_fails_it(sql_path, api, sender, template):
    """The ladder's failed status judges a retry against the row's deadline too."""
    answer = api.post("/messages", template_body(sender, template, ttl_seconds=2)).json()
    OutboundMessage.objects.filter(pk=answer["id"]).update(
        status=S.ACCEPTED, wamid="wamid.ttl1", attempts=2
    )
    other = api.post("/messages", template_body(sender, template, to="+14155550111")).json()
    OutboundMessage.objects.filter(pk=other["id"]).update(
        status=S.ACCEPTED, wamid="wamid.ttl2", attempts=2
    )
    Campaign.objects.filter(pk=answer["campaign_id"]).update(sent=2)  # as the sender counted
    apply_parsed(
        parse(
            statuses_body(
                [
                    status("wamid.ttl1", "failed", code=131000),
                    status("wamid.ttl2", "failed", code=131000, recipient="14155550111"),
                ],
                sender.phone_number_id,
            )
        )
    )
    # The backoff (5 s after a 2nd try) would end after the 2 s ttl: failed for good;
    # without a ttl: retried.
    assert OutboundMessage.objects.get(pk=answer["id"]).status == S.FAILED
    assert OutboundMessage.objects.get(pk=other["id"]).status == S.RETRY


def _h(hour: int):
    return datetime.min.time().replace(hour=hour)


def _td(hours: float) -> timedelta:
    return timedelta(hours=hours)

"""One code, one treatment: every code of the error table, arriving as a send answer (from the
simulator, through the sender's flusher step) or as a failed-status webhook (through the
ladder), leaves the row in the same state with the same effects around it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Campaign, Suppression
from messaging.errors import ERROR_TABLE
from messaging.graph_api import GraphApiClient, template_payload
from messaging.models import OutboundMessage
from messaging.models import OutboundStatus as S
from messaging.outcomes import record_answers
from messaging.policy.actions import apply_effects
from messaging.queue import ClaimedMessage
from tests import factories
from tests.webhooks.payloads import status, statuses_body
from webhooks.payload import parse
from webhooks.statuses import record_statuses

pytestmark = pytest.mark.django_db(transaction=True)


def _world():
    """A running campaign with one row and a second queued row to the same person, and a
    second running campaign of the same account."""
    campaign = factories.CampaignFactory(status=Campaign.Status.RUNNING)
    template = factories.TemplateFactory(account=campaign.sender.account)
    factories.CampaignTemplateFactory(campaign=campaign, template=template)
    other = factories.CampaignFactory(status=Campaign.Status.RUNNING, sender=campaign.sender)
    contact = factories.ContactFactory()
    row = factories.OutboundMessageFactory(
        campaign=campaign, contact=contact, template=template, sender=campaign.sender
    )
    sibling = factories.OutboundMessageFactory(
        campaign=other, contact=contact, template=template, sender=campaign.sender
    )
    return campaign, other, row, sibling


def _fingerprint(campaign, other, row, sibling, before) -> dict:
    for obj in (campaign, other, row, sibling):
        obj.refresh_from_db()
    contact = row.contact
    contact.refresh_from_db()
    delay = None
    if row.status == S.RETRY:
        delay = (row.next_attempt_at - before).total_seconds()
    return {
        "status": row.status,
        "attempts": row.attempts,
        "error_code": row.error_code,
        "error_category": row.error_category,
        # Retry delays are jittered: compare their scale, not the exact second.
        "retry_scale": None if delay is None else sum(delay >= edge for edge in (3, 120, 3600)),
        "campaign": (campaign.status, campaign.pause_reason),
        "other_campaign": other.status,
        "auth_failed": campaign.sender.account.__class__.objects.get(
            pk=campaign.sender.account_id
        ).auth_failed_at
        is not None,
        "template": row.template.__class__.objects.get(pk=row.template_id).status,
        "suppressed": Suppression.objects.filter(phone=row.phone).exists(),
        "sibling": sibling.status,
        "undeliverable": contact.undeliverable_code,
        "throttled": campaign.sender.__class__.objects.get(pk=campaign.sender_id).learned_rate
        is not None,
        "sent_counter": campaign.sent,
        "failed_counter": campaign.failed,
    }


def _by_send_answer(sim, code):
    campaign, other, row, sibling = _world()
    sim.configure(error_rates={str(code): 1.0})
    OutboundMessage.objects.filter(pk=row.pk).update(status=S.SENDING, attempts=1)
    client = GraphApiClient(max_connections=1)
    try:
        answer = client.send(
            phone_number_id=campaign.sender.phone_number_id,
            token=sim.token,
            payload=template_payload(
                to=row.phone.lstrip("+"),
                template_name=row.template.name,
                language=row.template.language,
                components=[],
                callback_data=f"out:{row.pk}",
            ),
        )
    finally:
        client.close()
    assert answer.error_code == code, answer
    claimed = ClaimedMessage(row.pk, campaign.pk, row.template_id, row.phone, [], 1, S.QUEUED)
    before = timezone.now()
    _moved, effects = record_answers(
        [(claimed, answer)], sender_id=campaign.sender_id, valid_until={}
    )
    apply_effects(effects)
    return _fingerprint(campaign, other, row, sibling, before)


def _by_webhook(code):
    campaign, other, row, sibling = _world()
    wamid = f"wamid.{row.pk}"
    OutboundMessage.objects.filter(pk=row.pk).update(
        status=S.ACCEPTED, attempts=1, wamid=wamid, accepted_at=timezone.now()
    )
    campaign.__class__.objects.filter(pk=campaign.pk).update(sent=1)
    before = timezone.now()
    body = statuses_body([status(wamid, "failed", code=code, recipient=row.phone.lstrip("+"))])
    record_statuses(events=parse(body).statuses)
    fingerprint = _fingerprint(campaign, other, row, sibling, before)
    return fingerprint


@pytest.mark.parametrize("code", sorted(ERROR_TABLE))
def test_a_code_gets_the_same_treatment_by_send_answer_and_by_webhook(sim, settings, code):
    settings.SENDER_RETRY_BASE_SECONDS = 5.0
    settings.SENDER_RETRY_MAX_SECONDS = 600.0
    by_answer = _by_send_answer(sim, code)
    by_webhook = _by_webhook(code)
    # The counters differ by construction: a webhook's row had been counted as sent.
    answer_counts = (by_answer.pop("sent_counter"), by_answer.pop("failed_counter"))
    webhook_counts = (by_webhook.pop("sent_counter"), by_webhook.pop("failed_counter"))
    assert by_answer == by_webhook
    failed = by_answer["status"] == S.FAILED
    assert answer_counts == (0, int(failed))
    assert webhook_counts == (int(failed), int(failed))


def test_every_retrying_action_has_an_attempt_cap(settings):
    """At the cap, a retrying code fails instead of retrying again (both paths share it)."""
    from messaging.errors import is_retryable
    from messaging.policy.actions import Effects, Target, judge

    target = Target(1, 1, 1, "+351912345678")
    for code, rule in ERROR_TABLE.items():
        if not is_retryable(rule) or rule.action == "slow_down":
            continue
        verdict = judge(
            rule,
            code=code,
            attempts=settings.SENDER_MAX_ATTEMPTS,
            valid_until=None,
            target=target,
            effects=Effects(),
        )
        assert verdict.status == S.FAILED, code


def test_a_retry_past_valid_until_fails_instead():
    from messaging.policy.actions import Effects, Target, judge

    verdict = judge(
        ERROR_TABLE[131049],
        code=131049,
        attempts=1,
        valid_until=timezone.now() + timedelta(hours=1),
        target=Target(1, 1, 1, "+351912345678"),
        effects=Effects(),
    )
    assert verdict.status == S.FAILED

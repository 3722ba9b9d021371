"""sync_numbers finds each account's business portfolio (GET /{WABA_ID}, owner_business_info,
from the simulator over HTTP); a 190 during sync_numbers or sync_templates fails the token
exactly as a 190 answer to a send does; the cluster runs the sync on a schedule."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from campaigns.models import Campaign, Portfolio, SenderNumber, TierSource, WhatsAppAccount
from messaging import numbers as number_sync
from messaging import templates as template_sync
from messaging.graph_api import GraphApiClient, template_payload
from messaging.integrations.alerts import conditions
from messaging.models import NumberChange, OutboundMessage
from messaging.models import OutboundStatus as S
from messaging.outcomes import record_answers
from messaging.policy import budget
from messaging.policy.actions import apply_effects
from messaging.queue import ClaimedMessage
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(fresh_simulator, settings, redis_client):
    settings.WHATSAPP_API_BASE_URL = fresh_simulator.base_url
    settings.WHATSAPP_ACCESS_TOKEN = fresh_simulator.token
    return fresh_simulator


def test_the_simulator_answers_a_wabas_owner(api):
    api.configure(businesses={"4242": {"id": "9001", "name": "Acme"}})
    answer = requests.get(
        api.phone_number_url("4242"),
        params={"fields": "id,name,owner_business_info"},
        headers=api.auth_headers,
        timeout=5,
    ).json()
    assert answer["owner_business_info"] == {"id": "9001", "name": "Acme"}
    # A WABA it was not told about: no owner in the answer (and not a phone number either).
    other = requests.get(
        api.phone_number_url("4343"),
        params={"fields": "id,owner_business_info"},
        headers=api.auth_headers,
        timeout=5,
    ).json()
    assert other == {"id": "4343"}


def test_sync_puts_the_account_in_its_owners_portfolio(api, account, capsys):
    first, second = factories.SenderFactory.create_batch(2, account=account)
    # Until now the account drew on its numbers' tier: the new portfolio starts from it.
    SenderNumber.objects.filter(pk=first.pk).update(messaging_tier="TIER_10K")
    api.configure(
        messaging_tier="TIER_2K",
        businesses={account.waba_id: {"id": "7770001", "name": "Acme BM"}},
    )

    call_command("sync_numbers")

    account.refresh_from_db()
    portfolio = Portfolio.objects.get(business_id="7770001")
    assert account.portfolio_id == portfolio.pk and portfolio.name == "Acme BM"
    assert (portfolio.messaging_tier, portfolio.tier_source) == ("TIER_2K", TierSource.GRAPH)
    # Learned, not announced: the portfolio's first reading replaces a guess.
    assert not NumberChange.objects.filter(portfolio=portfolio).exists()
    ledger = budget.ledger_for(second.pk)
    assert (ledger.key, ledger.limit) == (f"portfolio:{portfolio.pk}", 2000)
    assert set(ledger.sender_ids) == {first.pk, second.pk}
    out = capsys.readouterr().out
    assert f"account {account.waba_id}: now in portfolio 7770001 Acme BM" in out

    call_command("sync_numbers")  # the same answer: nothing moves, nothing is duplicated
    assert Portfolio.objects.count() == 1
    assert f"account {account.waba_id}: in portfolio 7770001" in capsys.readouterr().out

    # Meta says another business owns it now (a portfolio staff had made already).
    staff_made = Portfolio.objects.create(business_id="7770002", messaging_tier="TIER_10K")
    api.configure(businesses={account.waba_id: {"id": "7770002", "name": "New owner"}})
    call_command("sync_numbers")
    account.refresh_from_db()
    staff_made.refresh_from_db()
    assert account.portfolio_id == staff_made.pk and staff_made.name == "New owner"
    assert staff_made.messaging_tier == "TIER_2K"


def test_an_owner_the_api_does_not_give_leaves_the_portfolio_as_staff_set_it(api, account, capsys):
    portfolio = Portfolio.objects.create(business_id="555", name="Set by staff")
    WhatsAppAccount.objects.filter(pk=account.pk).update(portfolio=portfolio)
    factories.SenderFactory(account=account)

    call_command("sync_numbers")  # the simulator names no owner

    account.refresh_from_db()
    assert account.portfolio_id == portfolio.pk
    assert "no owner business in the answer" in capsys.readouterr().out

    # The owner's GET fails: a warning, the numbers are still read, the exit status is 0.
    api.configure(businesses={account.waba_id: {"error": 100}})
    call_command("sync_numbers")
    account.refresh_from_db()
    assert account.portfolio_id == portfolio.pk
    captured = capsys.readouterr()
    assert "could not read its owner: error 100" in captured.err
    assert "1 number(s) synced" in captured.out


def _sent_with(api, sender, token):
    """A send answered with `token` through the sender's own outcome path (record_answers,
    apply_effects), as in tests/policy/test_error_paths.py."""
    campaign = factories.CampaignFactory(sender=sender, status=Campaign.Status.RUNNING)
    template = factories.TemplateFactory(account=sender.account)
    row = factories.OutboundMessageFactory(campaign=campaign, template=template, sender=sender)
    OutboundMessage.objects.filter(pk=row.pk).update(status=S.SENDING, attempts=1)
    client = GraphApiClient(max_connections=1)
    try:
        answer = client.send(
            phone_number_id=sender.phone_number_id,
            token=token,
            payload=template_payload(
                to=row.phone.lstrip("+"),
                template_name=template.name,
                language=template.language,
                components=[],
                callback_data=f"out:{row.pk}",
            ),
        )
    finally:
        client.close()
    assert answer.error_code == 190
    claimed = ClaimedMessage(row.pk, campaign.pk, template.pk, row.phone, [], 1, S.QUEUED)
    _moved, effects = record_answers([(claimed, answer)], sender_id=sender.pk, valid_until={})
    apply_effects(effects)


def _token_state(account):
    account.refresh_from_db()
    return {
        "auth_failed": account.auth_failed_at is not None,
        "campaigns": sorted(
            Campaign.objects.filter(sender__account=account).values_list("status", "pause_reason")
        ),
    }


def test_a_190_in_sync_numbers_fails_the_token_as_a_190_send_answer_does(api, settings):
    by_send, by_sync = factories.AccountFactory(), factories.AccountFactory()
    for account in (by_send, by_sync):
        number = factories.SenderFactory(account=account)
        factories.CampaignFactory(sender=number, status=Campaign.Status.RUNNING)
        factories.CampaignFactory(sender=number, status=Campaign.Status.SCHEDULED)
    _sent_with(api, by_send.numbers.get(), token="expired")

    settings.WHATSAPP_ACCESS_TOKEN = "expired"
    with pytest.raises(CommandError, match="1 of 1 number"):
        call_command("sync_numbers", "--waba-id", by_sync.waba_id)

    sent_state, synced_state = _token_state(by_send), _token_state(by_sync)
    assert synced_state["auth_failed"] and sent_state["auth_failed"]
    # One pause reason, from the one rule; the send path has one campaign more (its row's).
    reasons = {reason for _status, reason in synced_state["campaigns"]}
    assert reasons == {reason for _status, reason in sent_state["campaigns"]}
    assert len(reasons) == 1 and "190" in reasons.pop()
    assert {status for status, _ in synced_state["campaigns"]} == {Campaign.Status.PAUSED}
    assert by_sync.numbers.get().sync_error.startswith("error 190")


def test_a_190_in_sync_templates_fails_the_token_too(api, account, settings):
    number = factories.SenderFactory(account=account)
    campaign = factories.CampaignFactory(sender=number, status=Campaign.Status.RUNNING)
    settings.WHATSAPP_ACCESS_TOKEN = "expired"

    with pytest.raises(CommandError, match=r"could not fetch templates .*error 190"):
        call_command("sync_templates", "--waba-id", account.waba_id)

    account.refresh_from_db()
    campaign.refresh_from_db()
    assert account.auth_failed_at is not None
    assert campaign.status == Campaign.Status.PAUSED and "190" in campaign.pause_reason


def test_an_unreachable_api_fails_no_token(settings, account):
    factories.SenderFactory(account=account)
    settings.WHATSAPP_API_BASE_URL = "http://127.0.0.1:9"  # discard: nothing listens
    with pytest.raises(CommandError):
        call_command("sync_numbers")
    account.refresh_from_db()
    assert account.auth_failed_at is None


def test_the_cluster_syncs_numbers_every_three_hours(api, account, monkeypatch):
    schedule = Schedule.objects.get(func="messaging.numbers.sync_all_numbers")
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == ("I", 180, -1)
    synced_before = factories.SenderFactory(account=account)
    never = factories.SenderFactory(account=account)
    SenderNumber.objects.filter(pk=synced_before.pk).update(
        synced_at=timezone.now() - timedelta(hours=1)
    )
    api.configure(messaging_tier="TIER_10K")

    assert number_sync.sync_all_numbers() == "2 of 2 number(s) synced"
    never.refresh_from_db()
    assert never.messaging_tier == "TIER_10K" and never.synced_at is not None

    # Out of time before the first call: nothing is read, and the run says what is left.
    monkeypatch.setattr(number_sync, "SCHEDULED_SYNC_SECONDS", -1.0)
    requests_before = api.stats()["requests"]
    assert number_sync.sync_all_numbers() == "0 of 0 number(s) synced, 2 left for the next run"
    assert api.stats()["requests"] == requests_before


def test_a_rare_schedule_does_not_hide_a_dead_cluster(settings):
    now = timezone.now()
    Schedule.objects.update(next_run=now - timedelta(hours=1))
    # The three-hourly sync's next run is far ahead, as it is right after it ran.
    Schedule.objects.filter(func="messaging.numbers.sync_all_numbers").update(
        next_run=now + timedelta(hours=3)
    )
    assert [f.key for f in conditions.cluster_down(now)] == ["cluster_down"]


def test_the_scheduled_syncs_leave_a_failed_token_alone_until_staff_clear_it(
    api, monkeypatch, admin_client, capsys
):
    good, bad = factories.AccountFactory(), factories.AccountFactory()
    campaigns = {}
    for account in (good, bad):
        number = factories.SenderFactory(account=account)
        campaigns[account] = factories.CampaignFactory(
            sender=number, status=Campaign.Status.RUNNING
        )
    monkeypatch.setenv(f"WHATSAPP_ACCESS_TOKEN_{bad.waba_id}", "expired")

    def bad_campaign() -> str:
        return Campaign.objects.get(pk=campaigns[bad].pk).status

    # The run that finds the token expired fails it and pauses its campaigns, as a send would.
    assert number_sync.sync_all_numbers() == "1 of 2 number(s) synced"
    bad.refresh_from_db()
    assert bad.auth_failed_at is not None and bad_campaign() == Campaign.Status.PAUSED
    skipped = (
        f"1 account(s) skipped, their token failed: {bad.waba_id} "
        "(clear the auth failure in admin once the token is replaced)"
    )

    # Staff resume it; the next runs of both schedules call only the good account (2 GETs
    # for its owner and number, 1 for its templates), say which they skipped, pause nothing.
    Campaign.objects.filter(pk=campaigns[bad].pk).update(status=Campaign.Status.RUNNING)
    requests_before = api.stats()["requests"]
    assert number_sync.sync_all_numbers() == f"1 of 1 number(s) synced; {skipped}"
    assert template_sync.sync_all_templates() == f"1 of 1 account(s) synced; {skipped}"
    assert api.stats()["requests"] - requests_before == 3
    call_command("sync_numbers")  # no account named: the same choice as the cluster's
    assert skipped in capsys.readouterr().out
    assert bad_campaign() == Campaign.Status.RUNNING
    assert Campaign.objects.get(pk=campaigns[good].pk).status == Campaign.Status.RUNNING

    # Named, the account is called: still expired, it says so and pauses again.
    with pytest.raises(CommandError, match="error 190"):
        call_command("sync_templates", "--waba-id", bad.waba_id)
    note = f"account {bad.waba_id}: its token failed at "
    assert note in capsys.readouterr().err
    assert bad_campaign() == Campaign.Status.PAUSED

    # A new token works when named, but only staff clear the failure (a read proves no send).
    monkeypatch.delenv(f"WHATSAPP_ACCESS_TOKEN_{bad.waba_id}")
    call_command("sync_numbers", "--waba-id", bad.waba_id)
    out = capsys.readouterr().out
    assert "1 number(s) synced" in out and note in out
    assert WhatsAppAccount.objects.get(pk=bad.pk).auth_failed_at is not None
    admin_client.post(
        reverse("admin:campaigns_whatsappaccount_changelist"),
        {"action": "clear_auth_failure", ACTION_CHECKBOX_NAME: [bad.pk]},
    )
    assert template_sync.sync_all_templates() == "2 of 2 account(s) synced"
    assert number_sync.sync_all_numbers() == "2 of 2 number(s) synced"

"""The policy at import: +1 marketing refused with its reason, numbers not on WhatsApp left
out and counted; both backends (PostgreSQL COPY and the portable batch path)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from campaigns.models import Campaign, ImportRejection
from messaging.campaign_import import create_campaign_from_csv, service
from messaging.campaign_import.batch import _BatchImport
from messaging.models import OutboundMessage
from messaging.policy.imports import US_MARKETING_REASON
from tests import factories

pytestmark = pytest.mark.django_db

CSV = (
    "phone,name\n"
    "+14155552671,Ann\n"  # row 2: US
    "+351912345671,Bea\n"  # row 3: Portugal
    "+16135550123,Cat\n"  # row 4: Canada (+1, not US)
    "+351912345672,Dan\n"  # row 5: not on WhatsApp (131026 last week)
)


@pytest.fixture(params=["postgres", "batch"])
def backend(request, monkeypatch):
    if request.param == "batch":
        monkeypatch.setattr(service, "_backend", _BatchImport)
    return request.param


def _import(sender, category, tmp_path):
    template = factories.TemplateFactory(
        account=sender.account, category=category, components=[{"type": "BODY", "text": "Hi"}]
    )
    path = tmp_path / "list.csv"
    path.write_text(CSV)
    return create_campaign_from_csv(
        name="Spring", csv_file=path, sender=sender, templates=[(template, 1)]
    )


@pytest.fixture
def marked():
    factories.ContactFactory(
        phone="+351912345672", undeliverable_at=timezone.now(), undeliverable_code=131026
    )


def test_marketing_to_us_numbers_is_refused_with_the_reason(sender, tmp_path, backend, marked):
    result = _import(sender, "MARKETING", tmp_path)
    phones = set(OutboundMessage.objects.values_list("phone", flat=True))
    assert phones == {"+351912345671", "+16135550123"}
    rejection = ImportRejection.objects.get()
    assert (rejection.row_number, rejection.reason) == (2, US_MARKETING_REASON)
    assert (result.rejected, result.undeliverable) == (1, 1)
    campaign = Campaign.objects.get()
    assert (campaign.total, campaign.undeliverable_count) == (2, 1)


def test_utility_to_us_numbers_is_queued(sender, tmp_path, backend, marked):
    result = _import(sender, "UTILITY", tmp_path)
    assert "+14155552671" in set(OutboundMessage.objects.values_list("phone", flat=True))
    assert (result.queued, result.rejected, result.undeliverable) == (3, 0, 1)


def test_the_rule_can_be_turned_off(sender, tmp_path, settings):
    settings.POLICY_BLOCK_US_MARKETING = False
    result = _import(sender, "MARKETING", tmp_path)
    assert result.rejected == 0


def test_an_old_not_on_whatsapp_mark_no_longer_keeps_the_number_out(sender, tmp_path):
    long_ago = timezone.now() - timezone.timedelta(days=31)
    factories.ContactFactory(phone="+351912345672", undeliverable_at=long_ago)
    result = _import(sender, "UTILITY", tmp_path)
    assert (result.queued, result.undeliverable) == (4, 0)


def test_create_campaign_sets_validity_window_and_cap(sender, tmp_path):
    from datetime import time, timedelta

    from django.core.management import call_command

    factories.TemplateFactory(account=sender.account, name="hello", components=[])
    path = tmp_path / "list.csv"
    path.write_text(CSV)
    until = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    call_command(
        "create_campaign",
        "--name=Spring",
        f"--csv={path}",
        f"--sender={sender.phone_number_id}",
        "--template=hello",
        f"--valid-until={until.isoformat()}",
        "--window=09:00-20:00",
        "--days=mon-fri",
        "--frequency-cap=1/3d",
    )
    campaign = Campaign.objects.get()
    assert campaign.valid_until == until
    assert (campaign.window_start, campaign.window_end) == (time(9), time(20))
    assert (campaign.window_days, campaign.frequency_cap) == ("mon-fri", "1/3d")


def test_refused_among_names_each_rule_in_one_query(sql_path, django_assert_num_queries):
    """What a transactional send asks before queueing: suppression (erased numbers by their
    hash) before not-on-WhatsApp, with an old mark no longer counting; on both SQL paths."""
    from campaigns.models import Suppression
    from messaging.policy.imports import SUPPRESSED, UNDELIVERABLE, refused_among

    now, long_ago = timezone.now(), timezone.now() - timezone.timedelta(days=31)
    factories.SuppressionFactory(phone="+351912000001")
    erased = factories.SuppressionFactory(phone="+351912000002")
    Suppression.objects.filter(pk=erased.pk).update(phone=None)
    factories.ContactFactory(phone="+351912000001", undeliverable_at=now)  # both: suppressed
    factories.ContactFactory(phone="+351912000003", undeliverable_at=now)
    factories.ContactFactory(phone="+351912000004", undeliverable_at=long_ago)
    phones = [f"+35191200000{n}" for n in range(1, 6)]
    with django_assert_num_queries(1):
        refused = refused_among(phones)
    assert refused == {
        "+351912000001": SUPPRESSED,
        "+351912000002": SUPPRESSED,
        "+351912000003": UNDELIVERABLE,
    }
    assert refused_among([]) == {}

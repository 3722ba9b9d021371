"""Cohorts of an earlier campaign become draft campaigns through the import service, on the
PostgreSQL set-based path and on the portable path (forced here on PostgreSQL)."""

from __future__ import annotations

import pytest

from campaigns.csv_import import CsvImportError, value_problem
from campaigns.csv_import.rendering import value_problem_sql
from campaigns.models import Campaign, ImportRejection
from messaging.audiences import cohort_audience, follow_up_campaign
from messaging.campaign_import import preview
from messaging.cohorts import Outcome
from messaging.models import OutboundMessage, OutboundStatus
from tests import factories
from tests.audiences.conftest import NOW

pytestmark = pytest.mark.django_db


def names(campaign: Campaign) -> list[str]:
    return list(
        OutboundMessage.objects.filter(campaign=campaign)
        .order_by("id")
        .values_list("contact__name", flat=True)
    )


@pytest.mark.parametrize(
    ("outcome", "hours", "expected"),
    [
        (Outcome.DELIVERED_NOT_READ, 24, ["delivered_old"]),
        (Outcome.DELIVERED_NOT_READ, 0, ["delivered_old", "delivered_new"]),
        (Outcome.READ_NOT_REPLIED, 0, ["read_quiet"]),
        (Outcome.REPLIED, 0, ["read_replied"]),
        (Outcome.FAILED_RETRYABLE, 0, ["failed_retryable"]),
        (Outcome.NOT_DELIVERED, 0, ["failed_retryable", "failed_final", "sent_only"]),
    ],
)
def test_each_cohort_becomes_a_draft_of_exactly_its_recipients(
    finished, sql_path, outcome, hours, expected
):
    result = follow_up_campaign(campaign=finished, outcome=outcome, hours=hours)
    draft = result.campaign
    assert draft.status == Campaign.Status.DRAFT
    assert draft.sender_id == finished.sender_id
    assert names(draft) == expected
    assert draft.total == len(expected)
    assert set(draft.template_links.values_list("template_id", flat=True)) == {
        link.template_id for link in finished.template_links.all()
    }
    first = OutboundMessage.objects.filter(campaign=draft).order_by("id").first()
    assert first.status == OutboundStatus.QUEUED
    # Positional variables: the name, then the attributes alphabetically (city, code).
    assert first.parameters[0]["parameters"][0]["text"] == expected[0]
    assert first.parameters[0]["parameters"][1]["text"] in ("Lisbon", "Porto")


def test_the_cohort_goes_through_the_import_policy_suppression_and_checks(finished, sql_path):
    factories.SuppressionFactory(phone=finished.rows["failed_final"].phone)
    # A contact that lost the attribute a template variable needs is rejected, with a reason.
    contact = finished.rows["sent_only"].contact
    contact.attributes = {"code": "C6"}
    contact.save()
    result = follow_up_campaign(campaign=finished, outcome=Outcome.NOT_DELIVERED)
    assert (result.queued, result.suppressed, result.rejected, result.duplicates) == (1, 1, 1, 0)
    assert names(result.campaign) == ["failed_retryable"]
    rejection = ImportRejection.objects.get(campaign=result.campaign)
    assert rejection.value == contact.phone
    assert rejection.reason.startswith("column 'city' is empty (needed by template")
    assert result.rejections[0].reason == rejection.reason


def test_an_empty_cohort_is_refused_and_writes_nothing(finished, sql_path):
    OutboundMessage.objects.filter(campaign=finished, status=OutboundStatus.READ).delete()
    before = Campaign.objects.count()
    with pytest.raises(CsvImportError, match="cohort “read, not replied” of “Spring” has no"):
        follow_up_campaign(campaign=finished, outcome=Outcome.READ_NOT_REPLIED)
    assert Campaign.objects.count() == before


def test_preview_of_a_cohort_writes_nothing(finished, sql_path, template):
    before = OutboundMessage.objects.count()
    result = preview(
        audience=cohort_audience(campaign=finished, outcome=Outcome.DELIVERED_NOT_READ),
        sender=finished.sender,
        templates=[(template, 1)],
    )
    assert result.queued == 2
    assert [p.phone for p in result.preview] == [
        finished.rows["delivered_old"].phone,
        finished.rows["delivered_new"].phone,
    ]
    assert OutboundMessage.objects.count() == before


def test_an_unknown_cohort_or_negative_hours_is_refused(finished):
    with pytest.raises(ValueError, match="not a cohort"):
        cohort_audience(campaign=finished, outcome="delivered")
    with pytest.raises(ValueError, match="hours must not be negative"):
        cohort_audience(campaign=finished, outcome=Outcome.REPLIED, hours=-1)


@pytest.mark.parametrize(
    "value", ["", "ok", "two  spaces", "five     spaces", "line\nbreak", "tab\there", "cr\r"]
)
def test_the_sql_value_check_says_what_value_problem_says(value):
    from django.db import connection

    sql, params = value_problem_sql("%s::text", [value])
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sql}", params)
        assert (cursor.fetchone()[0] or "") == value_problem(value)


def test_hours_count_from_now(finished):
    rows = cohort_audience(campaign=finished, outcome=Outcome.DELIVERED_NOT_READ, hours=1, now=NOW)
    with rows:
        phones = [r.phone for r in rows.rows(region="US", needed={})]
    assert phones == [finished.rows["delivered_old"].phone]


def test_a_follow_up_fills_positional_variables_from_the_campaigns_own_columns(
    sender, template, tmp_path, sql_path
):
    from messaging.campaign_import import create_campaign_from_csv

    path = tmp_path / "c.csv"
    # Not alphabetical: {{1}} is the code, {{2}} the name.
    path.write_text("phone,code,name\n4155552671,A1,Ann\n4155552672,B2,Bob\n")
    original = create_campaign_from_csv(
        name="Coded", csv_file=path, sender=sender, templates=[(template, 1)]
    ).campaign
    assert original.audience_columns == ["phone", "code", "name"]
    OutboundMessage.objects.filter(campaign=original).update(
        status=OutboundStatus.SENT, accepted_at=NOW
    )
    draft = follow_up_campaign(campaign=original, outcome=Outcome.NOT_DELIVERED).campaign
    sent = list(
        OutboundMessage.objects.filter(campaign=original).order_by("id").values_list("parameters")
    )
    again = list(
        OutboundMessage.objects.filter(campaign=draft).order_by("id").values_list("parameters")
    )
    assert again == sent
    assert sent[0][0][0]["parameters"][0]["text"] == "A1"


def _ended(campaign, template, label, status, i):
    contact = factories.ContactFactory(
        phone=factories.e164(100 + i), name=label, attributes={"city": "Faro", "code": f"C{i}"}
    )
    return factories.OutboundMessageFactory(
        campaign=campaign, contact=contact, template=template, status=status
    )


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        # Never sent (valid_until passed first): the person never saw it, so not delivered.
        (Outcome.NOT_DELIVERED, ["failed_retryable", "failed_final", "sent_only", "expired"]),
        (Outcome.EXPIRED, ["expired"]),
        # Expired is not a failure: the failure cohorts stay failures.
        (Outcome.FAILED_RETRYABLE, ["failed_retryable"]),
    ],
)
def test_expired_rows_are_not_delivered_and_cancelled_rows_are_in_no_cohort(
    finished, template, sql_path, outcome, expected
):
    _ended(finished, template, "expired", OutboundStatus.EXPIRED, 7)
    _ended(finished, template, "cancelled", OutboundStatus.CANCELLED, 8)
    assert names(follow_up_campaign(campaign=finished, outcome=outcome).campaign) == expected

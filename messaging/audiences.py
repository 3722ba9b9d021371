"""Audiences beyond a CSV upload: contact lists, segments, cohorts of an earlier campaign and
admin selections, each turned into a draft campaign by the one import service.

Lists are filled here too (by CSV, by rows from the API, by selected contacts); a row goes
through the same checks as a campaign import's (`check_row`), so a list never holds a number
an import would refuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet

from campaigns.csv_import import CsvRow, check_region
from campaigns.models import (
    Campaign,
    Contact,
    ContactList,
    ContactListMember,
    MessageTemplate,
    Segment,
)
from campaigns.segments import segment_contacts
from messaging.campaign_import import (
    Audience,
    ContactsAudience,
    ImportResult,
    RejectionRow,
    create_campaign,
)
from messaging.campaign_import.batch import upsert_contacts
from messaging.campaign_import.job import REJECTIONS_SHOWN
from messaging.campaign_import.service import PolicyFields
from messaging.cohorts import COHORTS, Outcome, recipients
from messaging.policy.fields import copied_settings

_LIST_BATCH = 2000


def cohort_audience(
    *, campaign: Campaign, outcome: str, hours: float = 0, now: datetime | None = None
) -> ContactsAudience:
    """The contacts of `campaign` whose message ended in `outcome`, in the original send order."""
    if outcome not in COHORTS:
        choices = ", ".join(str(c) for c in COHORTS)
        raise ValueError(f"{outcome!r} is not a cohort; choose one of: {choices}")
    rows = recipients(campaign_id=campaign.pk, outcome=outcome, hours=hours, now=now)
    label = Outcome(outcome).label
    return ContactsAudience(
        rows,
        prefix="contact__",
        description=f"the cohort “{label}” of “{campaign.name}”",
        columns=campaign.audience_columns,
    )


def segment_audience(segment: Segment) -> ContactsAudience:
    return ContactsAudience(segment_contacts(segment), description=f"the segment “{segment.name}”")


def list_audience(contact_list: ContactList) -> ContactsAudience:
    """The list's contacts in the order they were added."""
    return ContactsAudience(
        ContactListMember.objects.filter(contact_list=contact_list),
        prefix="contact__",
        description=f"the list “{contact_list.name}”",
    )


def selection_audience(contacts: QuerySet[Contact]) -> ContactsAudience:
    return ContactsAudience(contacts, description="the selection")


def draft_from_audience(
    *,
    audience: Audience,
    name: str,
    sender_id: int,
    templates: Sequence[tuple[MessageTemplate, int]],
    created_by: User | None = None,
    priority: int = 0,
    policy: PolicyFields | None = None,
) -> ImportResult:
    """A draft campaign from any audience, through the import service (same checks, report and
    suppression as a CSV). `policy`: its send-policy fields, as
    messaging.policy.fields.campaign_policy reads them (the admin form's clean does)."""
    from campaigns.models import SenderNumber

    return create_campaign(
        name=name,
        audience=audience,
        sender=SenderNumber.objects.get(pk=sender_id),
        templates=templates,
        created_by=created_by,
        priority=priority,
        policy=policy,
    )


def follow_up_campaign(
    *,
    campaign: Campaign,
    outcome: str,
    hours: float = 0,
    templates: Sequence[tuple[MessageTemplate, int]] | None = None,
    name: str = "",
    created_by: User | None = None,
    policy: PolicyFields | None = None,
) -> ImportResult:
    """A draft to the cohort `outcome` of `campaign`: same sender and priority, its templates
    and weights unless others are given, and its send-policy and template-winner settings
    (`policy.fields.copied_settings`, as a duplicate gets them) unless `policy` sets others."""
    if templates is None:
        templates = [
            (link.template, link.weight)
            for link in campaign.template_links.select_related("template").order_by("position")
        ]
    label = Outcome(outcome).label if outcome in Outcome.values else outcome
    return draft_from_audience(
        audience=cohort_audience(campaign=campaign, outcome=outcome, hours=hours),
        name=name or f"{campaign.name} – follow-up: {label}",
        sender_id=campaign.sender_id,
        templates=templates,
        created_by=created_by,
        priority=campaign.priority,
        policy={**copied_settings(campaign), **(policy or {})},
    )


@dataclass
class ListAddResult:
    added: int = 0  # new members
    already: int = 0  # valid rows whose contact was on the list before
    rejected: int = 0
    duplicates: int = 0
    rejections: list[RejectionRow] = field(default_factory=list)


def add_contacts_to_list(*, contact_list: ContactList, contacts: QuerySet[Contact]) -> int:
    """Add existing contacts (an admin selection); returns how many were new on the list."""
    ids = list(contacts.values_list("pk", flat=True))
    before = ContactListMember.objects.filter(contact_list=contact_list).count()
    for start in range(0, len(ids), _LIST_BATCH):
        ContactListMember.objects.bulk_create(
            [
                ContactListMember(contact_list=contact_list, contact_id=pk)
                for pk in ids[start : start + _LIST_BATCH]
            ],
            ignore_conflicts=True,
        )
    return ContactListMember.objects.filter(contact_list=contact_list).count() - before


@transaction.atomic
def add_rows_to_list(
    *, contact_list: ContactList, audience: Audience, default_region: str | None = None
) -> ListAddResult:
    """Add the rows of a CSV (`CsvAudience`) or of the API (`RowsAudience`) to a list:
    numbers checked and normalised as an import does, contacts created or updated (name and
    attributes), members added once. All or nothing."""
    region = check_region(default_region or settings.WHATSAPP_DEFAULT_REGION)
    result = ListAddResult()
    seen: set[str] = set()
    batch: list[CsvRow] = []
    with audience:
        for row in audience.rows(region=region, needed={}):
            if row.phone is None:
                result.rejected += 1
                if len(result.rejections) < REJECTIONS_SHOWN:
                    result.rejections.append(
                        RejectionRow(row.row_number, row.raw_phone, row.reason)
                    )
                continue
            if row.phone in seen:
                result.duplicates += 1
                continue
            seen.add(row.phone)
            batch.append(row)
            if len(batch) >= _LIST_BATCH:
                _add_batch(contact_list, batch, result)
                batch = []
        if batch:
            _add_batch(contact_list, batch, result)
    return result


def _add_batch(contact_list: ContactList, rows: list[CsvRow], result: ListAddResult) -> None:
    ids = list(upsert_contacts(rows).values())
    already = ContactListMember.objects.filter(
        contact_list=contact_list, contact_id__in=ids
    ).count()
    ContactListMember.objects.bulk_create(
        [ContactListMember(contact_list=contact_list, contact_id=pk) for pk in ids],
        ignore_conflicts=True,
    )
    result.added += len(ids) - already
    result.already += already

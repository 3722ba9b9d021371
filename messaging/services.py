"""Campaign state changes: one function per verb, each atomic, each refusing illegal moves.

Admin actions, management commands, the sender and the webhooks all go through these.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, Q
from django.db.models.functions import TruncMinute
from django.utils import timezone

from campaigns.models import (
    ERASED_PHONE_PREFIX,
    SENDABLE_TEMPLATE_LABEL,
    Campaign,
    CampaignTemplate,
)
from messaging import minutes
from messaging.evidence import held_filter
from messaging.integrations.events.payloads import publish_campaign_state
from messaging.models import PENDING_STATUSES, OutboundMessage, OutboundStatus
from messaging.policy import breaker, canary
from messaging.policy.actions import token_failure
from messaging.policy.fields import copied_settings
from messaging.policy.optout import suppressed_numbers, suppressed_sql
from messaging.state_version import bump_on_commit

logger = logging.getLogger(__name__)
Status = Campaign.Status

# Rows that still need the sender (or staff) before the campaign can complete.
UNFINISHED_STATUSES = (
    *PENDING_STATUSES,
    OutboundStatus.SENDING,
    OutboundStatus.UNKNOWN,
    OutboundStatus.HELD,
)


# Pauses people asked for; every other pause_reason is the engine's own (an alert to staff).
STAFF_PAUSE_REASON = "Paused by staff"
API_PAUSE_PREFIX = "Paused through the API"
# The automatic template winner's planned wait after its test share (messaging.winner).
WINNER_PAUSE_REASON = "Template test: waiting for its results"


def is_manual_pause(reason: str) -> bool:
    return reason.startswith((STAFF_PAUSE_REASON, API_PAUSE_PREFIX, WINNER_PAUSE_REASON))


class TransitionError(Exception):
    """A state change the campaign's current status does not allow."""


def _lock(campaign_id: int) -> Campaign:
    return Campaign.objects.select_for_update().get(pk=campaign_id)


def _move(campaign: Campaign, status: str, **fields: object) -> Campaign:
    if not campaign.can_transition_to(status):
        raise TransitionError(
            f"Campaign {campaign.pk} ({campaign.name}) cannot go from {campaign.status} to {status}"
        )
    campaign.status = status
    for name, value in fields.items():
        setattr(campaign, name, value)
    campaign.save(update_fields=["status", "updated_at", *fields])
    bump_on_commit()
    publish_campaign_state(campaign)  # outbound event, in this transaction
    logger.info("campaign %s -> %s", campaign.pk, status)
    return campaign


@transaction.atomic
def start_campaign(*, campaign_id: int, at: datetime | None = None) -> Campaign:
    """Start now, or schedule for `at` when it is in the future."""
    campaign = _lock(campaign_id)
    now = timezone.now()
    if at is not None and at > now:
        return _move(campaign, Status.SCHEDULED, start_at=at, pause_reason="")
    if failure := token_failure(campaign.sender_id):
        if campaign.status == Status.SCHEDULED:  # its start time came: it waits for staff
            return _move(campaign, Status.PAUSED, pause_reason=f"Not started: {failure}"[:255])
        raise TransitionError(f"Campaign {campaign.pk} ({campaign.name}) cannot start: {failure}")
    campaign = _move(
        campaign,
        Status.RUNNING,
        start_at=campaign.start_at or now,
        started_at=campaign.started_at or now,
        pause_reason="",
    )
    # A campaign's first run starts its canary, if it has one (the rest is held).
    canary.begin(campaign, now=now)
    return campaign


@transaction.atomic
def reschedule_campaign(*, campaign_id: int, at: datetime) -> Campaign:
    """Move a scheduled campaign's start to `at`, or schedule a draft for `at`.

    `at` must be in the future: to start now, use `start_campaign`.
    """
    if timezone.is_naive(at):
        at = timezone.make_aware(at)
    campaign = _lock(campaign_id)
    if at <= timezone.now():
        raise TransitionError(
            f"Campaign {campaign.pk} ({campaign.name}): the new start {at:%Y-%m-%d %H:%M} is in "
            "the past; start it now instead"
        )
    if campaign.status == Status.DRAFT:
        return _move(campaign, Status.SCHEDULED, start_at=at, pause_reason="")
    if campaign.status != Status.SCHEDULED:
        raise TransitionError(
            f"Campaign {campaign.pk} ({campaign.name}) is {campaign.status}: only a draft or "
            "scheduled campaign can be (re)scheduled"
        )
    campaign.start_at = at
    campaign.save(update_fields=["start_at", "updated_at"])
    bump_on_commit()
    logger.info("campaign %s rescheduled for %s", campaign.pk, at.isoformat())
    return campaign


@transaction.atomic
def return_to_draft(*, campaign_id: int) -> Campaign:
    """A scheduled campaign goes back to draft: it will not start until started or scheduled
    again; its queue is kept."""
    return _move(_lock(campaign_id), Status.DRAFT, start_at=None)


@transaction.atomic
def pause_campaign(*, campaign_id: int, reason: str = STAFF_PAUSE_REASON) -> Campaign:
    """Stop claiming new messages; in-flight requests finish and are recorded as usual."""
    return _move(_lock(campaign_id), Status.PAUSED, pause_reason=reason[:255])


@transaction.atomic
def resume_campaign(*, campaign_id: int) -> Campaign:
    campaign = _lock(campaign_id)
    if campaign.status != Status.PAUSED:
        raise TransitionError(f"Campaign {campaign.pk} is {campaign.status}, not paused")
    if failure := token_failure(campaign.sender_id):
        raise TransitionError(f"Campaign {campaign.pk} ({campaign.name}) cannot resume: {failure}")
    # Staff decided: the failures before the pause no longer count, and a failed canary's
    # held rows go.
    transaction.on_commit(lambda: breaker.reset(campaign_id))
    canary.resumed(campaign)
    if campaign.start_at and campaign.start_at > timezone.now():
        return _move(campaign, Status.SCHEDULED, pause_reason="")
    campaign = _move(
        campaign, Status.RUNNING, pause_reason="", started_at=campaign.started_at or timezone.now()
    )
    canary.begin(campaign)  # a campaign paused before it first ran
    return campaign


@transaction.atomic
def cancel_campaign(*, campaign_id: int) -> Campaign:
    """Cancel: nothing new is claimed, every message not yet sent is cancelled."""
    campaign = _move(_lock(campaign_id), Status.CANCELLED, finished_at=timezone.now())
    OutboundMessage.objects.filter(
        campaign_id=campaign_id, status__in=(*PENDING_STATUSES, OutboundStatus.HELD)
    ).update(status=OutboundStatus.CANCELLED)
    return campaign


def pause_campaigns(*, campaigns: list[int], reason: str) -> int:
    """Pause every running or scheduled campaign in `campaigns`; returns how many paused."""
    paused = 0
    for campaign_id in campaigns:
        try:
            pause_campaign(campaign_id=campaign_id, reason=reason)
            paused += 1
        except TransitionError:
            continue  # already paused, completed or cancelled
    if paused:
        logger.warning("paused %d campaign(s): %s", paused, reason)
    return paused


def pause_active_campaigns(*, reason: str, **filters: object) -> int:
    """Pause the running/scheduled campaigns matching `filters` (e.g. sender__account_id=…)."""
    ids = list(
        Campaign.objects.filter(
            status__in=(Status.RUNNING, Status.SCHEDULED), **filters
        ).values_list("pk", flat=True)
    )
    return pause_campaigns(campaigns=ids, reason=reason)


def complete_if_finished(*, campaign_id: int) -> bool:
    """The one place that decides completion: a running campaign whose every row is final."""
    if OutboundMessage.objects.filter(
        campaign_id=campaign_id, status__in=UNFINISHED_STATUSES
    ).exists():
        return False
    with transaction.atomic():
        campaign = _lock(campaign_id)
        if campaign.status != Status.RUNNING or campaign.kind == Campaign.Kind.TRANSACTIONAL:
            return False  # a transactional stream stands for good
        # Re-check under the lock: a requeue may have raced us.
        if OutboundMessage.objects.filter(
            campaign_id=campaign_id, status__in=UNFINISHED_STATUSES
        ).exists():
            return False
        _move(campaign, Status.COMPLETED, finished_at=timezone.now())
    return True


@transaction.atomic
def start_due_campaigns(*, now: datetime | None = None) -> list[int]:
    """Scheduled campaigns whose start time has come become running."""
    now = now or timezone.now()
    due = list(
        Campaign.objects.select_for_update(skip_locked=True)
        .filter(status=Status.SCHEDULED, start_at__lte=now)
        .values_list("pk", flat=True)
    )
    for campaign_id in due:
        start_campaign(campaign_id=campaign_id)
    return due


def requeueable() -> Q:
    """Rows staff may put back in the queue: dead letters, held rows, and in-doubt rows held
    for want of webhook evidence (re-sending those is staff's call: it may duplicate)."""
    return Q(status__in=(OutboundStatus.FAILED, OutboundStatus.HELD)) | held_filter()


@transaction.atomic
def requeue_failed(*, campaign_id: int, message_ids: list[int] | None = None) -> int:
    """Put dead-lettered messages back in the queue (staff's decision), fixing the counters."""
    campaign = _lock(campaign_id)
    if campaign.parameters_purged_at is not None:
        # Past retention (messaging.retention): the rendered messages are gone.
        raise TransitionError(
            f"Campaign {campaign_id} finished too long ago: its messages were purged"
        )
    rows = (
        OutboundMessage.objects.filter(campaign_id=campaign_id)
        .filter(requeueable())
        .exclude(phone__startswith=ERASED_PHONE_PREFIX)
    )
    if message_ids is not None:
        rows = rows.filter(pk__in=message_ids)
    # Never to a number that opted out since (131050 suppresses it): those stay failed.
    rows = rows.exclude(phone__in=suppressed_numbers())
    failed = rows.filter(status=OutboundStatus.FAILED).count()
    # A row the API accepted and a webhook later failed is in `sent` too; its resend will be
    # counted again, so it leaves `sent` now, with its old wamid.
    was_sent = rows.filter(status=OutboundStatus.FAILED, accepted_at__isnull=False).count()
    # The per-minute counts lose the times the update clears (grouped, one query).
    cleared = minutes.Deltas()
    for column, kind in (("accepted_at", "accepted"), ("failed_at", "failed")):
        grouped = (
            rows.filter(**{f"{column}__isnull": False})
            .annotate(m=TruncMinute(column, tzinfo=UTC))
            .values_list("m")
            .annotate(n=Count("*"))
            .order_by()
        )
        for minute, n in grouped:
            cleared.add(campaign_id, minute, kind, -n)
    count = rows.update(
        status=OutboundStatus.RETRY,
        attempts=0,
        lost_claims=0,
        next_attempt_at=timezone.now(),
        wamid=None,
        accepted_at=None,
        error_code=None,
        error_category="",
        error_detail="",
        failed_at=None,
    )
    if failed:
        Campaign.objects.filter(pk=campaign_id).update(
            failed=F("failed") - failed, sent=F("sent") - was_sent
        )
    minutes.write(cleared)
    if count and campaign.status == Status.COMPLETED:
        # Completed is final for staff transitions, but new work reopens it.
        Campaign.objects.filter(pk=campaign_id).update(status=Status.RUNNING, finished_at=None)
        bump_on_commit()
    return count


@transaction.atomic
def duplicate_campaign(*, campaign_id: int, created_by_id: int | None = None) -> Campaign:
    """A new draft with the same sender, templates, contacts, send-policy and template-winner
    settings (`policy.fields.copied_settings`), queued afresh; numbers that opted out since
    are left out (and counted as suppressed)."""
    source = Campaign.objects.get(pk=campaign_id)
    copy = Campaign.objects.create(
        name=f"{source.name} (copy)"[:200],
        sender_id=source.sender_id,
        priority=source.priority,
        created_by_id=created_by_id,
        total=source.total,
        **copied_settings(source),
    )
    CampaignTemplate.objects.bulk_create(
        CampaignTemplate(
            campaign=copy, template_id=t.template_id, weight=t.weight, position=t.position
        )
        for t in source.template_links.all()
    )
    table = OutboundMessage._meta.db_table
    suppressed, suppressed_params = suppressed_sql("m.phone")
    params: list[Any] = [copy.pk, OutboundStatus.QUEUED, timezone.now(), campaign_id]
    with connection.cursor() as cursor:
        # One statement, whatever the size: id order (the interleave) is preserved.
        cursor.execute(
            f"INSERT INTO {table} (campaign_id, contact_id, template_id, sender_id, phone, "  # noqa: S608
            "parameters, priority, status, attempts, next_attempt_at, claimed_by, "
            "error_category, error_detail) "
            "SELECT %s, contact_id, template_id, sender_id, phone, parameters, priority, %s, 0, "
            "%s, '', '', '' FROM "
            + table
            + " m WHERE campaign_id = %s AND NOT "
            + suppressed
            + " ORDER BY id",
            [*params, *suppressed_params],
        )
        copy.total = cursor.rowcount
    copy.suppressed_count = OutboundMessage.objects.filter(campaign_id=campaign_id).count() - (
        copy.total
    )
    copy.save(update_fields=["total", "suppressed_count"])
    return copy


PROMOTE_BATCH = 1000


def promote_template(*, campaign_id: int, template_id: int) -> int:
    """Send the rest of the campaign with one of its templates: every still-queued row gets
    `template_id` and its parameters re-rendered from the contact. Rows a worker holds are
    skipped (they go out as they are); rows the template cannot render for are left alone.
    Batches of PROMOTE_BATCH, each its own transaction, so sending goes on meanwhile.
    Returns the rows moved. The admin records who decided (the campaign's history)."""
    from campaigns.csv_import.errors import CsvImportError, TemplateVariableError
    from campaigns.csv_import.rendering import render_components
    from campaigns.models import MessageTemplate

    link = CampaignTemplate.objects.filter(campaign_id=campaign_id, template_id=template_id)
    if not link.exists():
        raise TransitionError(f"Template {template_id} is not one of campaign {campaign_id}'s")
    template = MessageTemplate.objects.get(pk=template_id)
    if not template.is_sendable:
        raise TransitionError(
            f"Template {template} is {template.status}, not {SENDABLE_TEMPLATE_LABEL}"
        )
    moved, last_id = 0, 0
    while True:
        with transaction.atomic():
            rows = list(
                OutboundMessage.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(campaign_id=campaign_id, status=OutboundStatus.QUEUED, id__gt=last_id)
                .exclude(template_id=template_id)
                .select_related("contact")
                .order_by("id")[:PROMOTE_BATCH]
            )
            if not rows:
                break
            last_id = rows[-1].pk
            changed = []
            for row in rows:
                try:
                    row.parameters = render_components(template, row.contact.attributes)
                except (CsvImportError, TemplateVariableError):
                    continue
                row.template_id = template_id
                changed.append(row)
            OutboundMessage.objects.bulk_update(changed, ["template", "parameters"])
            moved += len(changed)
    logger.info("campaign %s: %s queued rows moved to template %s", campaign_id, moved, template)
    return moved

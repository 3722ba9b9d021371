"""The import entry points: check the templates, build the job, run a backend, fill counters."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from campaigns.csv_import import (
    CsvImportError,
    check_region,
    compile_template,
    interleave_pattern,
    required_columns,
)
from campaigns.limits import campaign_settings_problem
from campaigns.models import (
    SENDABLE_TEMPLATE_LABEL,
    Campaign,
    CampaignTemplate,
    MessageTemplate,
    SenderNumber,
)
from messaging.campaign_import.audience import Audience, CsvAudience
from messaging.campaign_import.batch import _BatchImport
from messaging.campaign_import.job import ImportResult, _Job
from messaging.campaign_import.postgres import _PostgresImport
from messaging.policy.actions import token_failure
from messaging.policy.imports import phone_rule
from messaging.services import start_campaign
from messaging.sql_paths import postgres_fast_paths

logger = logging.getLogger(__name__)
# Campaign fields of the send policy a new campaign may be given (messaging/policy).
PolicyFields = dict[str, Any]

PREVIEW_SHOWN = 10


def create_campaign(
    *,
    name: str,
    audience: Audience,
    sender: SenderNumber,
    templates: Sequence[tuple[MessageTemplate, int]],
    start_at: datetime | None = None,
    start_now: bool = False,
    created_by: User | None = None,
    default_region: str | None = None,
    priority: int = 0,
    policy: PolicyFields | None = None,
) -> ImportResult:
    """A draft campaign (scheduled/running with `start_at`/`start_now`) with its queue filled
    from `audience` (a CSV, rows, or contacts in the database: see audience.py). `policy`
    sets the campaign's send-policy fields (valid_until, window, frequency cap).

    Raises CsvImportError (a ValueError) for an audience that cannot be imported, ValueError
    for templates the sender cannot send; nothing is written then.
    """
    problem = campaign_settings_problem(
        name=name, priority=priority, start_at=start_at, weights=[w for _, w in templates]
    )
    if problem:
        raise ValueError(problem)
    if start_now and (failure := token_failure(sender.pk)):
        # Refused before the import, not after it: nothing is written, the audience is intact.
        raise ValueError(f"Cannot start now: {failure}")
    name = name.strip()
    if start_at is not None and timezone.is_naive(start_at):
        start_at = timezone.make_aware(start_at)
    region = check_region(default_region or settings.WHATSAPP_DEFAULT_REGION)
    links = _check_templates(sender, templates)
    began = time.monotonic()
    with audience, transaction.atomic():
        campaign = Campaign.objects.create(
            name=name[:200],
            sender=sender,
            priority=priority,
            created_by=created_by,
            **(policy or {}),
        )
        CampaignTemplate.objects.bulk_create(
            CampaignTemplate(campaign=campaign, template=t, weight=w, position=i)
            for i, (t, w) in enumerate(links)
        )
        job = _job(audience, links, campaign, sender, priority, preview_limit=PREVIEW_SHOWN)
        result = _run(job, audience, region)
        if result.queued == 0:
            raise CsvImportError(_nothing_to_send(result, audience))
        Campaign.objects.filter(pk=campaign.pk).update(
            total=result.queued,
            rejected_count=result.rejected,
            duplicate_count=result.duplicates,
            suppressed_count=result.suppressed,
            audience_columns=list(audience.columns),
            undeliverable_count=result.undeliverable,
        )
        if start_now or start_at is not None:
            start_campaign(campaign_id=campaign.pk, at=None if start_now else start_at)
        campaign.refresh_from_db()
    result.campaign = campaign
    logger.info(
        "campaign %s imported: %d queued, %d rejected, %d duplicates, %d suppressed in %.1fs",
        campaign.pk,
        result.queued,
        result.rejected,
        result.duplicates,
        result.suppressed,
        time.monotonic() - began,
    )
    return result


def create_campaign_from_csv(*, csv_file: str | Path | IO[bytes], **options: Any) -> ImportResult:
    """`create_campaign` from a CSV file (a path or a binary file object)."""
    return create_campaign(audience=CsvAudience(csv_file), **options)


def preview(
    *,
    audience: Audience,
    sender: SenderNumber,
    templates: Sequence[tuple[MessageTemplate, int]],
    default_region: str | None = None,
    limit: int = PREVIEW_SHOWN,
    keep_rows: bool = False,
) -> ImportResult:
    """What `create_campaign` would do with this audience, writing nothing. `keep_rows`
    lists every row that would be queued in `ImportResult.kept` (for the launch plan)."""
    region = check_region(default_region or settings.WHATSAPP_DEFAULT_REGION)
    links = _check_templates(sender, templates)
    with audience, transaction.atomic():
        job = _job(audience, links, None, sender, 0, preview_limit=limit)
        job.keep_rows = keep_rows
        result = _run(job, audience, region)
        # The temporary tables go with the rollback; no real table was written.
        transaction.set_rollback(True)
    return result


def preview_csv(*, csv_file: str | Path | IO[bytes], **options: Any) -> ImportResult:
    """`preview` of a CSV file."""
    return preview(audience=CsvAudience(csv_file), **options)


def _run(job: _Job, audience: Audience, region: str) -> ImportResult:
    needed = required_columns(job.plans)
    backend = _backend()
    if isinstance(backend, _PostgresImport):
        select = audience.selected_sql()
        if select is not None:
            return backend.run_selected(job, select, needed)
        path = audience.parse_process_path() if job.campaign is not None else None
        if path is not None:
            return backend.run_in_process(
                job, path, region=region, needed=needed, check=audience.whole_file_check()
            )
    return backend.run(job, audience.rows(region=region, needed=needed, phone_rule=job.phone_rule))


def _check_templates(
    sender: SenderNumber, templates: Sequence[tuple[MessageTemplate, int]]
) -> list[tuple[MessageTemplate, int]]:
    if not templates:
        raise ValueError("choose at least one template")
    links: list[tuple[MessageTemplate, int]] = []
    seen: set[int] = set()
    for template, weight in templates:
        label = f"{template.name}:{template.language}"
        if template.account_id != sender.account_id:
            raise ValueError(
                f"template {label} belongs to another WhatsApp account than sender "
                f"{sender.display_number}"
            )
        if not template.is_sendable:
            raise ValueError(
                f"template {label} is {template.status}, only {SENDABLE_TEMPLATE_LABEL} can be sent"
            )
        if template.pk in seen:
            raise ValueError(f"template {label} is chosen twice")
        if not isinstance(weight, int) or weight < 1:
            raise ValueError(f"template {label}: the weight must be a whole number of at least 1")
        seen.add(template.pk)
        links.append((template, weight))
    return links


def _job(
    audience: Audience,
    links: list[tuple[MessageTemplate, int]],
    campaign: Campaign | None,
    sender: SenderNumber,
    priority: int,
    *,
    preview_limit: int,
) -> _Job:
    plans = [compile_template(t, audience.columns) for t, _ in links]
    return _Job(
        plans=plans,
        templates={t.pk: t for t, _ in links},
        pattern=[links[i][0].pk for i in interleave_pattern([w for _, w in links])],
        campaign=campaign,
        sender=sender,
        priority=priority,
        now=timezone.now(),
        preview_limit=preview_limit,
        phone_rule=phone_rule(t.category for t, _ in links),
    )


def _nothing_to_send(result: ImportResult, audience: Audience) -> str:
    if not (result.rejected or result.duplicates or result.suppressed or result.undeliverable):
        return audience.empty_message
    parts = [f"no number left to send to: {result.rejected} rejected"]
    parts.append(f"{result.duplicates} duplicates, {result.suppressed} suppressed")
    if result.undeliverable:
        parts.append(f"{result.undeliverable} not on WhatsApp")
    first = "; ".join(f"row {r.row_number}: {r.reason}" for r in result.rejections[:3])
    return ", ".join(parts) + (f" (first: {first})" if first else "")


def _backend() -> _PostgresImport | _BatchImport:
    return _PostgresImport() if postgres_fast_paths() else _BatchImport()

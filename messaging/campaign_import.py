"""Campaign creation from a CSV: contacts upserted, queue rows written in send order, one
transaction.

On PostgreSQL the rows stream through COPY into a temporary table and set-based SQL does the
rest (duplicates, suppression, contact upsert, interleaved queue insert, rendering); elsewhere
(the SQLite quickstart) batches of `bulk_create` do the same. Either way a failure anywhere
leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from campaigns.csv_import import (
    CsvFile,
    CsvImportError,
    CsvRow,
    Slot,
    TemplatePlan,
    check_region,
    compile_template,
    interleave_pattern,
    parse_rows,
    render_plan,
    required_columns,
)
from campaigns.models import (
    Campaign,
    CampaignTemplate,
    Contact,
    ImportRejection,
    MessageTemplate,
    SenderNumber,
    Suppression,
)
from messaging.models import OutboundMessage, OutboundStatus
from messaging.services import start_campaign

logger = logging.getLogger(__name__)

__all__ = [
    "CsvImportError",
    "ImportResult",
    "PreviewMessage",
    "RejectionRow",
    "create_campaign_from_csv",
    "preview_csv",
]

REJECTIONS_SHOWN = 100
PREVIEW_SHOWN = 10
_BATCH = 2000


@dataclass(frozen=True)
class RejectionRow:
    row_number: int
    value: str
    reason: str


@dataclass(frozen=True)
class PreviewMessage:
    phone: str
    template_name: str
    template_language: str
    components: list[dict[str, Any]]


@dataclass
class ImportResult:
    campaign: Campaign | None  # None for previews
    queued: int = 0
    rejected: int = 0
    duplicates: int = 0
    suppressed: int = 0
    rejections: list[RejectionRow] = field(default_factory=list)
    preview: list[PreviewMessage] = field(default_factory=list)


@dataclass
class _Job:
    """Everything an import backend needs besides the rows."""

    plans: list[TemplatePlan]
    templates: dict[int, MessageTemplate]
    pattern: list[int]  # one period of the interleave, as template ids
    campaign: Campaign | None
    sender: SenderNumber
    priority: int
    now: datetime
    preview_limit: int


def create_campaign_from_csv(
    *,
    name: str,
    csv_file: str | Path | IO[bytes],
    sender: SenderNumber,
    templates: Sequence[tuple[MessageTemplate, int]],
    start_at: datetime | None = None,
    start_now: bool = False,
    created_by: AbstractBaseUser | None = None,
    default_region: str | None = None,
    priority: int = 0,
) -> ImportResult:
    """A draft campaign (scheduled/running with `start_at`/`start_now`) with its queue filled.

    Raises CsvImportError (a ValueError) for a file that cannot be imported, ValueError for
    templates the sender cannot send; nothing is written then.
    """
    name = (name or "").strip()
    if not name:
        raise ValueError("the campaign needs a name")
    if start_at is not None and timezone.is_naive(start_at):
        start_at = timezone.make_aware(start_at)
    region = check_region(default_region or settings.WHATSAPP_DEFAULT_REGION)
    links = _check_templates(sender, templates)
    began = time.monotonic()
    with CsvFile(csv_file) as source, transaction.atomic():
        campaign = Campaign.objects.create(
            name=name[:200], sender=sender, priority=priority, created_by=created_by
        )
        CampaignTemplate.objects.bulk_create(
            CampaignTemplate(campaign=campaign, template=t, weight=w, position=i)
            for i, (t, w) in enumerate(links)
        )
        job = _job(source, links, campaign, sender, priority, preview_limit=PREVIEW_SHOWN)
        result = _backend().run(job, parse_rows(source, region=region, needed=_needed(job)))
        if result.queued == 0:
            raise CsvImportError(_nothing_to_send(result))
        Campaign.objects.filter(pk=campaign.pk).update(
            total=result.queued,
            rejected_count=result.rejected,
            duplicate_count=result.duplicates,
            suppressed_count=result.suppressed,
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


def preview_csv(
    *,
    csv_file: str | Path | IO[bytes],
    sender: SenderNumber,
    templates: Sequence[tuple[MessageTemplate, int]],
    default_region: str | None = None,
    limit: int = PREVIEW_SHOWN,
) -> ImportResult:
    """What `create_campaign_from_csv` would do with this file, writing nothing."""
    region = check_region(default_region or settings.WHATSAPP_DEFAULT_REGION)
    links = _check_templates(sender, templates)
    with CsvFile(csv_file) as source, transaction.atomic():
        job = _job(source, links, None, sender, 0, preview_limit=limit)
        result = _backend().run(job, parse_rows(source, region=region, needed=_needed(job)))
        # The temporary tables go with the rollback; no real table was written.
        transaction.set_rollback(True)
    return result


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
            raise ValueError(f"template {label} is {template.status}, only APPROVED can be sent")
        if template.pk in seen:
            raise ValueError(f"template {label} is chosen twice")
        if not isinstance(weight, int) or weight < 1:
            raise ValueError(f"template {label}: the weight must be a whole number of at least 1")
        seen.add(template.pk)
        links.append((template, weight))
    return links


def _job(
    source: CsvFile,
    links: list[tuple[MessageTemplate, int]],
    campaign: Campaign | None,
    sender: SenderNumber,
    priority: int,
    *,
    preview_limit: int,
) -> _Job:
    plans = [compile_template(t, source.layout.columns) for t, _ in links]
    return _Job(
        plans=plans,
        templates={t.pk: t for t, _ in links},
        pattern=[links[i][0].pk for i in interleave_pattern([w for _, w in links])],
        campaign=campaign,
        sender=sender,
        priority=priority,
        now=timezone.now(),
        preview_limit=preview_limit,
    )


def _needed(job: _Job) -> dict[str, str]:
    return required_columns(job.plans)


def _nothing_to_send(result: ImportResult) -> str:
    parts = [f"no number left to send to: {result.rejected} rejected"]
    parts.append(f"{result.duplicates} duplicates, {result.suppressed} suppressed")
    first = "; ".join(f"row {r.row_number}: {r.reason}" for r in result.rejections[:3])
    return ", ".join(parts) + (f" (first: {first})" if first else "")


def _backend() -> _PostgresImport | _BatchImport:
    return _PostgresImport() if connection.vendor == "postgresql" else _BatchImport()


def _preview_message(job: _Job, phone: str, template_id: int, components: list) -> PreviewMessage:
    template = job.templates[template_id]
    return PreviewMessage(phone, template.name, template.language, components)


class _PostgresImport:
    """COPY into a temporary table, then a handful of set-based statements."""

    def run(self, job: _Job, rows: Any) -> ImportResult:
        suffix = uuid.uuid4().hex[:12]
        stage, plan = f"wac_import_stage_{suffix}", f"wac_import_plan_{suffix}"
        result = ImportResult(campaign=job.campaign)
        with connection.cursor() as cursor:
            # Sorting a million phones for the DISTINCT is far quicker in memory.
            cursor.execute("SET LOCAL work_mem = '128MB'")
            cursor.execute(
                f"CREATE TEMPORARY TABLE {stage} (row_number integer NOT NULL, phone text, "
                "name text, vals jsonb, raw text, reason text)"
            )
            self._copy(cursor.cursor, stage, rows)
            cursor.execute(f"ANALYZE {stage}")
            self._filter(cursor, stage, plan, result)
            if job.campaign is None:
                result.preview = self._preview_from_plan(cursor, job, plan)
            else:
                self._write(cursor, job, stage, plan, result)
            cursor.execute(
                f"SELECT row_number, coalesce(raw, ''), reason FROM {stage} "  # noqa: S608
                "WHERE reason IS NOT NULL ORDER BY row_number LIMIT %s",
                [REJECTIONS_SHOWN],
            )
            result.rejections = [RejectionRow(*r) for r in cursor.fetchall()]
            cursor.execute(f"DROP TABLE {stage}, {plan}")
        return result

    @staticmethod
    def _copy(raw_cursor: Any, stage: str, rows: Any) -> None:
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        with raw_cursor.copy(
            f"COPY {stage} (row_number, phone, name, vals, raw, reason) FROM STDIN"
        ) as copy:
            write = copy.write_row
            for row in rows:
                if row.phone is None:
                    write((row.row_number, None, None, None, row.raw_phone, row.reason))
                else:
                    write((row.row_number, row.phone, row.name, dumps(row.values), None, None))

    @staticmethod
    def _filter(cursor: Any, stage: str, plan: str, result: ImportResult) -> None:
        cursor.execute(
            f"SELECT count(*) FILTER (WHERE reason IS NOT NULL), "  # noqa: S608
            f"count(*) FILTER (WHERE reason IS NULL) FROM {stage}"
        )
        result.rejected, valid = cursor.fetchone()
        # The first row of each number wins; later ones are duplicates.
        cursor.execute(
            f"CREATE TEMPORARY TABLE {plan} AS SELECT DISTINCT ON (phone) row_number, phone, "  # noqa: S608
            f"name, vals FROM {stage} WHERE reason IS NULL ORDER BY phone, row_number"
        )
        kept = cursor.rowcount
        result.duplicates = valid - kept
        cursor.execute(
            f"DELETE FROM {plan} p USING {Suppression._meta.db_table} s "  # noqa: S608
            "WHERE s.phone = p.phone"
        )
        suppressed = cursor.rowcount
        cursor.execute(
            f"DELETE FROM {plan} p USING {Contact._meta.db_table} c "  # noqa: S608
            "WHERE c.phone = p.phone AND c.opted_out_at IS NOT NULL"
        )
        result.suppressed = suppressed + cursor.rowcount
        result.queued = kept - result.suppressed  # what a preview reports; the insert recounts

    def _write(self, cursor: Any, job: _Job, stage: str, plan: str, result: ImportResult) -> None:
        contact = Contact._meta.db_table
        campaign = job.campaign
        assert campaign is not None
        # Sorted by phone, so two imports sharing numbers lock them in the same order.
        cursor.execute(
            f"INSERT INTO {contact} AS c (phone, name, attributes, wa_id, created_at) "  # noqa: S608
            f"SELECT phone, coalesce(name, ''), vals - 'name', '', %s FROM {plan} ORDER BY phone "
            "ON CONFLICT (phone) DO UPDATE SET "
            "name = CASE WHEN EXCLUDED.name <> '' THEN EXCLUDED.name ELSE c.name END, "
            "attributes = c.attributes || EXCLUDED.attributes "
            "WHERE (EXCLUDED.name <> '' AND EXCLUDED.name <> c.name) "
            "OR NOT c.attributes @> EXCLUDED.attributes",
            [job.now],
        )
        render_sql, render_params = _render_case(job.plans)
        period = len(job.pattern)
        cursor.execute(
            f"INSERT INTO {OutboundMessage._meta.db_table} (campaign_id, contact_id, "  # noqa: S608
            "template_id, sender_id, phone, parameters, priority, status, attempts, "
            "next_attempt_at, claimed_by, error_category, error_detail) "
            f"SELECT %s, c.id, q.template_id, %s, q.phone, {render_sql}, %s, %s, 0, %s, '', '', '' "
            # seq = place in send order (file order of the numbers kept); the pattern maps
            # it to a template, so templates interleave.
            "FROM (SELECT n.phone, n.vals, n.seq, "
            f"(%s::bigint[])[(n.seq %% {period}) + 1] AS template_id FROM "
            "(SELECT phone, vals, row_number() OVER (ORDER BY row_number) - 1 AS seq "
            f"FROM {plan}) n) q JOIN {contact} c ON c.phone = q.phone ORDER BY q.seq",
            [
                campaign.pk,
                job.sender.pk,
                *render_params,
                job.priority,
                OutboundStatus.QUEUED,
                job.now,
                job.pattern,
            ],
        )
        result.queued = cursor.rowcount
        cursor.execute(
            f"INSERT INTO {ImportRejection._meta.db_table} "  # noqa: S608
            "(campaign_id, row_number, value, reason) "
            f"SELECT %s, row_number, left(coalesce(raw, ''), 255), left(reason, 255) "
            f"FROM {stage} WHERE reason IS NOT NULL ORDER BY row_number",
            [campaign.pk],
        )
        result.preview = [
            _preview_message(job, m.phone, m.template_id, m.parameters)
            for m in OutboundMessage.objects.filter(campaign=campaign).order_by("id")[
                : job.preview_limit
            ]
        ]

    @staticmethod
    def _preview_from_plan(cursor: Any, job: _Job, plan: str) -> list[PreviewMessage]:
        cursor.execute(
            f"SELECT phone, vals FROM {plan} ORDER BY row_number LIMIT %s",  # noqa: S608
            [job.preview_limit],
        )
        plans = {p.template_id: p for p in job.plans}
        preview = []
        for seq, (phone, vals) in enumerate(cursor.fetchall()):
            template_id = job.pattern[seq % len(job.pattern)]
            values = vals if isinstance(vals, dict) else json.loads(vals)
            components = render_plan(plans[template_id], values)
            preview.append(_preview_message(job, phone, template_id, components))
        return preview


def _render_case(plans: list[TemplatePlan]) -> tuple[str, list[Any]]:
    """SQL computing each row's `components` from q.vals, the same as `render_plan`."""
    sql = ["CASE q.template_id"]
    params: list[Any] = []
    for plan in plans:
        expr, expr_params = _plan_sql(plan)
        sql.append(f"WHEN %s THEN {expr}")
        params += [plan.template_id, *expr_params]
    sql.append("END")
    return " ".join(sql), params


def _plan_sql(plan: TemplatePlan) -> tuple[str, list[Any]]:
    components: list[str] = []
    params: list[Any] = []
    for component in plan.components:
        head = "jsonb_build_object('type', %s::text, "
        params.append(component.type)
        if component.sub_type is not None:
            head += "'sub_type', %s::text, 'index', %s::text, "
            params += [component.sub_type, component.index]
        parameters = []
        for slot in component.slots:
            sql, slot_params = _slot_sql(slot)
            parameters.append(sql)
            params += slot_params
        components.append(f"{head}'parameters', jsonb_build_array({', '.join(parameters)}))")
    if not components:
        return "'[]'::jsonb", []
    return f"jsonb_build_array({', '.join(components)})", params


def _slot_sql(slot: Slot) -> tuple[str, list[Any]]:
    value = "(q.vals ->> %s::text)"
    if slot.kind == "text" and slot.parameter_name is None:
        return f"jsonb_build_object('type', 'text', 'text', {value})", [slot.column]
    if slot.kind == "text":
        return (
            f"jsonb_build_object('type', 'text', 'text', {value}, 'parameter_name', %s::text)",
            [slot.column, slot.parameter_name],
        )
    if slot.kind == "coupon_code":
        return (
            f"jsonb_build_object('type', 'coupon_code', 'coupon_code', {value})",
            [slot.column],
        )
    # A media header: a link or an uploaded media id, as is_link() decides.
    return (
        f"jsonb_build_object('type', %s::text, %s::text, CASE WHEN lower({value}) "
        f"LIKE 'https://%%' OR lower({value}) LIKE 'http://%%' THEN "
        f"jsonb_build_object('link', {value}) ELSE jsonb_build_object('id', {value}) END)",
        [slot.kind, slot.kind, *[slot.column] * 4],
    )


class _BatchImport:
    """The portable path (SQLite quickstart): batches of bulk_create in the same order."""

    def run(self, job: _Job, rows: Any) -> ImportResult:
        result = ImportResult(campaign=job.campaign)
        plans = {p.template_id: p for p in job.plans}
        seen: set[str] = set()
        state = {"seq": 0}
        batch: list[CsvRow] = []
        rejections: list[ImportRejection] = []
        for row in rows:
            if row.phone is None:
                result.rejected += 1
                if len(result.rejections) < REJECTIONS_SHOWN:
                    result.rejections.append(
                        RejectionRow(row.row_number, row.raw_phone, row.reason)
                    )
                if job.campaign is not None:
                    rejections.append(
                        ImportRejection(
                            campaign=job.campaign,
                            row_number=row.row_number,
                            value=row.raw_phone,
                            reason=row.reason,
                        )
                    )
                    if len(rejections) >= _BATCH:
                        ImportRejection.objects.bulk_create(rejections)
                        rejections = []
                continue
            if row.phone in seen:
                result.duplicates += 1
                continue
            seen.add(row.phone)
            batch.append(row)
            if len(batch) >= _BATCH:
                self._flush(job, plans, batch, result, state)
                batch = []
        if batch:
            self._flush(job, plans, batch, result, state)
        if rejections:
            ImportRejection.objects.bulk_create(rejections)
        return result

    def _flush(
        self,
        job: _Job,
        plans: dict[int | None, TemplatePlan],
        batch: list[CsvRow],
        result: ImportResult,
        state: dict[str, int],
    ) -> None:
        phones = [r.phone for r in batch]
        blocked = set(Suppression.objects.filter(phone__in=phones).values_list("phone", flat=True))
        blocked |= set(
            Contact.objects.filter(phone__in=phones, opted_out_at__isnull=False).values_list(
                "phone", flat=True
            )
        )
        keep = [r for r in batch if r.phone not in blocked]
        result.suppressed += len(batch) - len(keep)
        planned = []
        for row in keep:
            template_id = job.pattern[state["seq"] % len(job.pattern)]
            state["seq"] += 1
            planned.append((row, template_id, render_plan(plans[template_id], row.values)))
        if job.campaign is None:
            for row, template_id, components in planned:
                if len(result.preview) < job.preview_limit:
                    result.preview.append(_preview_message(job, row.phone, template_id, components))
            result.queued += len(planned)
            return
        contacts = self._upsert_contacts(keep)
        messages = OutboundMessage.objects.bulk_create(
            OutboundMessage(
                campaign=job.campaign,
                contact_id=contacts[row.phone],
                template_id=template_id,
                sender=job.sender,
                phone=row.phone,
                parameters=components,
                priority=job.priority,
                status=OutboundStatus.QUEUED,
                next_attempt_at=job.now,
            )
            for row, template_id, components in planned
        )
        for message in messages:
            if len(result.preview) < job.preview_limit:
                result.preview.append(
                    _preview_message(job, message.phone, message.template_id, message.parameters)
                )
        result.queued += len(messages)

    @staticmethod
    def _upsert_contacts(rows: list[CsvRow]) -> dict[str, int]:
        existing = {c.phone: c for c in Contact.objects.filter(phone__in=[r.phone for r in rows])}
        changed, new = [], []
        for row in rows:
            attributes = {k: v for k, v in row.values.items() if k != "name"}
            contact = existing.get(row.phone)
            if contact is None:
                new.append(Contact(phone=row.phone, name=row.name, attributes=attributes))
                continue
            merged = {**contact.attributes, **attributes}
            name = row.name or contact.name
            if merged != contact.attributes or name != contact.name:
                contact.attributes, contact.name = merged, name
                changed.append(contact)
        if changed:
            Contact.objects.bulk_update(changed, ["name", "attributes"])
        Contact.objects.bulk_create(new)
        ids = {c.phone: c.pk for c in existing.values()}
        ids.update(
            Contact.objects.filter(phone__in=[c.phone for c in new]).values_list("phone", "pk")
        )
        return ids

"""Campaign creation from a CSV: contacts upserted, queue rows written in send order, one
transaction.

On PostgreSQL the rows stream through COPY into a temporary table and set-based SQL does the
rest (duplicates, suppression, contact upsert, interleaved queue insert, rendering); elsewhere
(the SQLite quickstart) batches of `bulk_create` do the same. Either way a failure anywhere
leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
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
# Rows per COPY on PostgreSQL: big enough for set-based statements to pay off, small enough
# that the few chunks in flight stay a few tens of MB.
CHUNK_ROWS = 50_000


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
    if not (result.rejected or result.duplicates or result.suppressed):
        return "the file has no data rows, only the header"
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
    """Chunks of rows COPYed into a temporary table, each followed by set-based statements.

    A thread parses the file (phonenumbers is most of the Python time) and drops repeated
    numbers while this thread feeds PostgreSQL, so both cores work at once. Chunks go in file
    order and queue positions continue where the last chunk stopped, so the result is the
    same as one pass over the whole file.
    """

    def run(self, job: _Job, rows: Iterator[CsvRow]) -> ImportResult:
        batch = f"wac_import_batch_{uuid.uuid4().hex[:12]}"
        result = ImportResult(campaign=job.campaign)
        seq = 0
        with connection.cursor() as cursor:
            self._prepare(cursor, batch, writing=job.campaign is not None)
            with _Producer(rows) as chunks:
                for chunk in chunks:
                    seq = self._chunk(cursor, job, batch, chunk, seq, result)
            result.queued = seq
            if job.campaign is not None:
                # Back to Django's default: foreign keys checked at commit.
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
                result.preview = [
                    _preview_message(job, m.phone, m.template_id, m.parameters)
                    for m in OutboundMessage.objects.filter(campaign=job.campaign).order_by("id")[
                        : job.preview_limit
                    ]
                ]
            cursor.execute(f"DROP TABLE {batch}")
        return result

    @staticmethod
    def _prepare(cursor: Any, batch: str, *, writing: bool) -> None:
        # Sorts and hashes of a chunk stay in memory; JIT compiling the same few statements
        # again for every chunk costs more than it saves.
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute("SET LOCAL jit = off")
        if writing:
            # Check each chunk's foreign keys as it goes in (while the next chunk is parsed)
            # instead of four checks per queue row piling up for the commit.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            f"CREATE TEMPORARY TABLE {batch} (row_number integer NOT NULL, "
            'phone text COLLATE "C" NOT NULL, name text, vals jsonb)'
        )

    def _chunk(
        self, cursor: Any, job: _Job, batch: str, chunk: _Chunk, seq: int, result: ImportResult
    ) -> int:
        result.duplicates += chunk.duplicates
        result.rejected += len(chunk.rejected)
        for row in chunk.rejected[: max(0, REJECTIONS_SHOWN - len(result.rejections))]:
            result.rejections.append(RejectionRow(*row))
        cursor.execute(f"TRUNCATE {batch}")
        with cursor.cursor.copy(f"COPY {batch} (row_number, phone, name, vals) FROM STDIN") as copy:
            for row in chunk.kept:
                copy.write_row(row)
        # Scalar subqueries, not joins: one index probe per row of the chunk, where a join
        # would hash the whole contact table again for every chunk.
        cursor.execute(
            f"DELETE FROM {batch} b WHERE (SELECT true FROM "  # noqa: S608
            f'{Suppression._meta.db_table} s WHERE s.phone = b.phone COLLATE "default") OR '
            f"(SELECT true FROM {Contact._meta.db_table} c "
            'WHERE c.phone = b.phone COLLATE "default" AND c.opted_out_at IS NOT NULL)'
        )
        result.suppressed += cursor.rowcount
        kept = len(chunk.kept) - cursor.rowcount
        if job.campaign is None:
            self._preview_batch(cursor, job, batch, seq, result)
            return seq + kept
        self._write(cursor, job, batch, seq)
        if chunk.rejected:
            table = ImportRejection._meta.db_table
            with cursor.cursor.copy(
                f"COPY {table} (campaign_id, row_number, value, reason) FROM STDIN"
            ) as copy:
                for row_number, value, reason in chunk.rejected:
                    copy.write_row((job.campaign.pk, row_number, value, reason))
        return seq + kept

    @staticmethod
    def _write(cursor: Any, job: _Job, batch: str, seq: int) -> None:
        contact = Contact._meta.db_table
        campaign = job.campaign
        assert campaign is not None
        # Sorted by phone, so two imports sharing numbers lock them in the same order.
        cursor.execute(
            f"INSERT INTO {contact} AS c (phone, name, attributes, wa_id, created_at) "  # noqa: S608
            f"SELECT phone, coalesce(name, ''), vals - 'name', '', %s FROM {batch} "
            "ORDER BY phone ON CONFLICT (phone) DO UPDATE SET "
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
            f"SELECT %s, (SELECT c.id FROM {contact} c WHERE c.phone = q.phone COLLATE "
            f"\"default\"), q.template_id, %s, q.phone, {render_sql}, %s, %s, 0, %s, '', '', '' "
            # seq = place in send order (file order of the numbers kept); the pattern maps
            # it to a template, so templates interleave.
            "FROM (SELECT n.phone, n.vals, n.row_number, "
            f"(%s::bigint[])[(n.seq %% {period}) + 1] AS template_id FROM "
            "(SELECT phone, vals, row_number, "
            "%s + row_number() OVER (ORDER BY row_number) - 1 AS seq "
            # Ordered by row_number, which orders seq too and is the window's own order,
            # so there is no sort of the rendered rows.
            f"FROM {batch}) n) q ORDER BY q.row_number",
            [
                campaign.pk,
                job.sender.pk,
                *render_params,
                job.priority,
                OutboundStatus.QUEUED,
                job.now,
                job.pattern,
                seq,
            ],
        )

    @staticmethod
    def _preview_batch(cursor: Any, job: _Job, batch: str, seq: int, result: ImportResult) -> None:
        missing = job.preview_limit - len(result.preview)
        if missing <= 0:
            return
        cursor.execute(
            f"SELECT phone, vals FROM {batch} ORDER BY row_number LIMIT %s",  # noqa: S608
            [missing],
        )
        plans = {p.template_id: p for p in job.plans}
        for offset, (phone, vals) in enumerate(cursor.fetchall()):
            template_id = job.pattern[(seq + offset) % len(job.pattern)]
            values = vals if isinstance(vals, dict) else json.loads(vals)
            components = render_plan(plans[template_id], values)
            result.preview.append(_preview_message(job, phone, template_id, components))


@dataclass
class _Chunk:
    kept: list[tuple[int, str, str, str]] = field(default_factory=list)  # first rows of numbers
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # row, value, reason
    duplicates: int = 0


_END = object()


class _Producer:
    """Parses rows on a thread into chunks; iterate to consume them.

    Repeated numbers are dropped here: the first row of a number wins, and a set of ints
    (about 60 MB per million numbers) is far cheaper than asking PostgreSQL per chunk. The
    queue is short, so at most a few chunks are in memory. An error while parsing (a broken
    row) is raised in the consuming thread, after the chunks before it.
    """

    def __init__(self, rows: Iterator[CsvRow], chunk_size: int | None = None) -> None:
        self._rows = rows
        self._chunk_size = chunk_size or CHUNK_ROWS
        self._queue: queue.Queue[object] = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="csv-import-parse", daemon=True)

    def __enter__(self) -> Iterator[_Chunk]:
        self._thread.start()
        return self._chunks()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.1)  # unblock a producer waiting on a full queue
        self._thread.join()

    def _chunks(self) -> Iterator[_Chunk]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        seen: set[int] = set()
        chunk = _Chunk()
        size = 0
        try:
            for row in self._rows:
                size += 1
                if row.phone is None:
                    chunk.rejected.append((row.row_number, row.raw_phone, row.reason))
                else:
                    key = int(row.phone[1:])
                    if key in seen:
                        chunk.duplicates += 1
                    else:
                        seen.add(key)
                        chunk.kept.append((row.row_number, row.phone, row.name, dumps(row.values)))
                if size >= self._chunk_size:
                    if not self._put(chunk):
                        return
                    chunk, size = _Chunk(), 0
            if size and not self._put(chunk):
                return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)


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

"""The portable import (the SQLite quickstart): batches of `bulk_create`, same result."""

from __future__ import annotations

from typing import Any

from campaigns.csv_import import CsvRow, TemplatePlan, render_plan
from campaigns.models import Contact, ImportRejection
from messaging.campaign_import.job import (
    REJECTIONS_SHOWN,
    ImportResult,
    RejectionRow,
    _Job,
    _preview_message,
    count_refusal,
)
from messaging.models import OutboundMessage, OutboundStatus
from messaging.policy.imports import undeliverable_among
from messaging.policy.optout import suppressed_among

_BATCH = 2000


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
                count_refusal(result, row.reason)
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
        phones = [r.e164 for r in batch]
        blocked = suppressed_among(phones)
        unreachable = undeliverable_among(phones) - blocked
        keep = [r for r in batch if r.e164 not in blocked and r.e164 not in unreachable]
        result.suppressed += len(blocked & set(phones))
        result.undeliverable += len(unreachable)
        planned = []
        for row in keep:
            template_id = job.pattern[state["seq"] % len(job.pattern)]
            state["seq"] += 1
            planned.append((row, template_id, render_plan(plans[template_id], row.values)))
        if job.campaign is None:
            if job.keep_rows:
                kept = result.kept if result.kept is not None else []
                kept += [(r.e164, r.values.get("timezone"), t) for r, t, _c in planned]
                result.kept = kept
            for row, template_id, components in planned:
                if len(result.preview) < job.preview_limit:
                    result.preview.append(_preview_message(job, row.e164, template_id, components))
            result.queued += len(planned)
            return
        contacts = upsert_contacts(keep)
        messages = OutboundMessage.objects.bulk_create(
            OutboundMessage(
                campaign=job.campaign,
                contact_id=contacts[row.e164],
                template_id=template_id,
                sender=job.sender,
                phone=row.e164,
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


def upsert_contacts(rows: list[CsvRow]) -> dict[str, int]:
    """Create or update the contacts of checked rows (name, merged attributes); phone -> id."""
    existing = {c.phone: c for c in Contact.objects.filter(phone__in=[r.phone for r in rows])}
    changed, new = [], []
    for row in rows:
        attributes = {k: v for k, v in row.values.items() if k != "name"}
        contact = existing.get(row.e164)
        if contact is None:
            new.append(Contact(phone=row.e164, name=row.name, attributes=attributes))
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
    ids.update(Contact.objects.filter(phone__in=[c.phone for c in new]).values_list("phone", "pk"))
    return ids

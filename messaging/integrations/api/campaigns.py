"""Campaigns through the API: create (JSON recipients or a CSV file), read, start/pause/…

Creation goes through the admin's import service (`create_campaign_from_csv`), so the same
checks and the same report (rejected, duplicate, suppressed rows) apply. JSON recipients are
written as a CSV first: one validation, one code path.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from django.http import HttpRequest
from ninja import File, Form, Router, Status
from ninja.files import UploadedFile

from campaigns.models import Campaign, MessageTemplate, SenderNumber
from messaging import services
from messaging.campaign_import import create_campaign_from_csv
from messaging.integrations.api import lookups
from messaging.integrations.api.auth import require
from messaging.integrations.api.errors import ApiError
from messaging.integrations.api.messages import ERRORS, message_out
from messaging.integrations.api.schemas import (
    CampaignIn,
    CampaignOut,
    CampaignTemplateIn,
    ErrorOut,
    ImportReportOut,
    MessagePage,
    ReasonIn,
)
from messaging.integrations.models import ApiKey
from messaging.models import OutboundMessage

router = Router(tags=["campaigns"])
PAGE_MAX = 1000


def campaign_out(campaign: Campaign) -> dict[str, Any]:
    return {
        "id": campaign.pk,
        "name": campaign.name,
        "status": campaign.status,
        "kind": campaign.kind,
        "sender": campaign.sender.phone_number_id,
        "priority": campaign.priority,
        "pause_reason": campaign.pause_reason,
        "total": campaign.total,
        "sent": campaign.sent,
        "delivered": campaign.delivered,
        "read": campaign.read,
        "failed": campaign.failed,
    }


def _templates(
    sender: SenderNumber, wanted: list[CampaignTemplateIn]
) -> list[tuple[MessageTemplate, int]]:
    chosen = []
    for i, item in enumerate(wanted):
        template = MessageTemplate.objects.filter(
            account_id=sender.account_id, name=item.name, language=item.language
        ).first()
        if template is None:
            raise ApiError(
                400,
                "unknown_template",
                f"no template {item.name}:{item.language} on the account of {sender}",
                f"templates[{i}]",
            )
        chosen.append((template, item.weight))
    return chosen


def _recipients_csv(payload: CampaignIn) -> io.BytesIO:
    columns: list[str] = []
    for recipient in payload.recipients:
        for name in recipient.variables:
            if name not in columns:
                columns.append(name)
    for reserved in ("phone", "name"):
        if reserved in columns:
            raise ApiError(400, "invalid_variables", f"{reserved!r} is not a variable name")
    # A name column only when a name is given: positional variables may be filled by column
    # order, and an empty column must not take a variable's place.
    named = any(r.name for r in payload.recipients)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["phone", *(["name"] if named else []), *columns])
    for r in payload.recipients:
        name_cell = [r.name] if named else []
        writer.writerow([r.phone, *name_cell, *(r.variables.get(c, "") for c in columns)])
    return io.BytesIO(text.getvalue().encode())


def _import(
    *,
    name: str,
    csv_file: Any,
    sender: SenderNumber,
    templates: list[tuple[MessageTemplate, int]],
    start_now: bool,
    start_at: datetime | None,
    priority: int,
) -> Status:
    try:
        result = create_campaign_from_csv(
            name=name,
            csv_file=csv_file,
            sender=sender,
            templates=templates,
            start_now=start_now,
            start_at=start_at,
            priority=priority,
        )
    except ValueError as exc:  # CsvImportError is a ValueError: nothing was written
        raise ApiError(400, "import_refused", str(exc), "recipients") from exc
    assert result.campaign is not None
    report = {
        "campaign": campaign_out(result.campaign),
        "queued": result.queued,
        "rejected": result.rejected,
        "duplicates": result.duplicates,
        "suppressed": result.suppressed,
        "rejections": [vars(r) for r in result.rejections],
    }
    return Status(201, report)


CREATED = {201: ImportReportOut, **ERRORS, 429: ErrorOut}


@router.post("/campaigns", response=CREATED, summary="Create a campaign from JSON recipients")
def create(request: HttpRequest, payload: CampaignIn) -> Status:
    """Recipients' `variables` are the CSV's columns (`1`, `2`, named variables, `header_media`)."""
    require(request, ApiKey.Scope.CAMPAIGNS_WRITE)
    sender = lookups.sender_named(payload.sender)
    return _import(
        name=payload.name,
        csv_file=_recipients_csv(payload),
        sender=sender,
        templates=_templates(sender, payload.templates),
        start_now=payload.start_now,
        start_at=payload.start_at,
        priority=payload.priority,
    )


@router.post("/campaigns/upload", response=CREATED, summary="Create a campaign from a CSV file")
def upload(
    request: HttpRequest,
    file: File[UploadedFile],
    name: Form[str],
    sender: Form[str],
    template: Annotated[str, Form(description="name:language[:weight], comma-separated")],
    start_now: Form[bool] = False,
    start_at: Form[datetime | None] = None,
) -> Status:
    require(request, ApiKey.Scope.CAMPAIGNS_WRITE)
    number = lookups.sender_named(sender)
    wanted = []
    for part in filter(None, (p.strip() for p in template.split(","))):
        bits = part.split(":")
        if len(bits) not in (2, 3) or (len(bits) == 3 and not bits[2].isdigit()):
            raise ApiError(400, "invalid_template", f"{part!r} is not name:language[:weight]")
        weight = int(bits[2]) if len(bits) == 3 else 1
        wanted.append(CampaignTemplateIn(name=bits[0], language=bits[1], weight=weight))
    if not wanted:
        raise ApiError(400, "invalid_template", "name at least one template", "template")
    return _import(
        name=name,
        csv_file=file.file,
        sender=number,
        templates=_templates(number, wanted),
        start_now=start_now,
        start_at=start_at,
        priority=0,
    )


@router.get("/campaigns/{campaign_id}", response={200: CampaignOut, **ERRORS, 429: ErrorOut})
def detail(request: HttpRequest, campaign_id: int) -> Status:
    require(request, ApiKey.Scope.CAMPAIGNS_READ)
    return Status(200, campaign_out(lookups.campaign(campaign_id)))


@router.get(
    "/campaigns/{campaign_id}/messages", response={200: MessagePage, **ERRORS, 429: ErrorOut}
)
def messages(
    request: HttpRequest,
    campaign_id: int,
    status: str | None = None,
    after: int = 0,
    limit: int = 100,
) -> Status:
    """The campaign's messages in queue order, optionally of one status; page with `after`."""
    require(request, ApiKey.Scope.MESSAGES_READ)
    campaign = lookups.campaign(campaign_id)
    if not 1 <= limit <= PAGE_MAX:
        raise ApiError(400, "invalid_limit", f"limit is 1 to {PAGE_MAX}", "limit")
    rows = OutboundMessage.objects.filter(campaign_id=campaign.pk, pk__gt=after)
    if status is not None:
        rows = rows.filter(status=lookups.status_value(status))
    page = list(rows.order_by("pk")[:limit])
    next_after = page[-1].pk if len(page) == limit else None
    return Status(200, {"items": [message_out(r) for r in page], "next_after": next_after})


def _act(request: HttpRequest, campaign_id: int, verb: Callable[[], Campaign]) -> Status:
    require(request, ApiKey.Scope.CAMPAIGNS_WRITE)
    campaign = lookups.campaign(campaign_id)
    if campaign.kind == Campaign.Kind.TRANSACTIONAL:
        raise ApiError(409, "transactional_stream", "a transactional stream is always running")
    try:
        verb()
    except services.TransitionError as exc:
        raise ApiError(409, "invalid_transition", str(exc), "status") from exc
    return Status(200, campaign_out(lookups.campaign(campaign_id)))


ACTED = {200: CampaignOut, **ERRORS, 409: ErrorOut, 429: ErrorOut}


@router.post("/campaigns/{campaign_id}/start", response=ACTED)
def start(request: HttpRequest, campaign_id: int) -> Status:
    return _act(request, campaign_id, lambda: services.start_campaign(campaign_id=campaign_id))


@router.post("/campaigns/{campaign_id}/pause", response=ACTED)
def pause(request: HttpRequest, campaign_id: int, payload: ReasonIn | None = None) -> Status:
    reason = services.API_PAUSE_PREFIX
    if payload and payload.reason and payload.reason != services.API_PAUSE_PREFIX:
        reason = f"{services.API_PAUSE_PREFIX}: {payload.reason}"
    return _act(
        request,
        campaign_id,
        lambda: services.pause_campaign(campaign_id=campaign_id, reason=reason),
    )


@router.post("/campaigns/{campaign_id}/resume", response=ACTED)
def resume(request: HttpRequest, campaign_id: int) -> Status:
    return _act(request, campaign_id, lambda: services.resume_campaign(campaign_id=campaign_id))


@router.post("/campaigns/{campaign_id}/cancel", response=ACTED)
def cancel(request: HttpRequest, campaign_id: int) -> Status:
    return _act(request, campaign_id, lambda: services.cancel_campaign(campaign_id=campaign_id))

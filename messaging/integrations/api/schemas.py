"""Request and response shapes; they are also what the OpenAPI document publishes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ninja import Field, Schema


class ErrorDetail(Schema):
    code: str
    message: str
    field: str | None = None


class ErrorOut(Schema):
    error: ErrorDetail


class TemplateIn(Schema):
    name: str = Field(..., max_length=512)
    language: str = Field(..., max_length=16)
    # The CSV's column names: "1", "2" (positional), variable names (named), header_media…
    variables: dict[str, str] = Field(default_factory=dict)
    # Or the Graph API `components` list as is (then `variables` is ignored).
    components: list[dict[str, Any]] | None = None


class MessageIn(Schema):
    to: str = Field(..., max_length=32, description="E.164, or national for the default region")
    template: TemplateIn | None = None
    text: str | None = Field(None, description="Free-form; only inside the 24 h window")
    preview_url: bool = False
    ttl_seconds: int | None = Field(
        None,
        description="Validity from acceptance: not sent within it, the message ends `expired` "
        "and is never sent (a one-time code, a delivery slot). At most 30 days.",
    )
    valid_until: datetime | None = Field(
        None, description="The same as an absolute time with a UTC offset; not with ttl_seconds"
    )


class SendIn(MessageIn):
    sender: str = Field(..., description="phone-number-id or E.164 of a sender number")


class BatchIn(Schema):
    sender: str
    messages: list[MessageIn] = Field(..., min_length=1, max_length=1000)
    ttl_seconds: int | None = Field(
        None, description="Validity of every message that gives none of its own"
    )


class MessageOut(Schema):
    id: int
    status: str
    campaign_id: int
    to: str
    wamid: str | None = None
    valid_until: datetime | None = None


class BatchItemOut(Schema):
    index: int
    message: MessageOut | None = None
    error: ErrorDetail | None = None


class BatchOut(Schema):
    queued: int
    refused: int
    results: list[BatchItemOut]


class TimelineItem(Schema):
    at: datetime
    status: str
    error_code: int | None = None
    error_title: str = ""


class MessageDetailOut(MessageOut):
    attempts: int
    error_code: int | None = None
    error_category: str = ""
    error_detail: str = ""
    timeline: list[TimelineItem]


class MessagePage(Schema):
    items: list[MessageOut]
    next_after: int | None = Field(None, description="pass as `after` for the next page")


class CampaignTemplateIn(Schema):
    name: str
    language: str
    weight: int = Field(1, ge=1)


class RecipientIn(Schema):
    phone: str = Field(..., max_length=64)
    name: str = ""
    variables: dict[str, str] = Field(default_factory=dict)


class CampaignIn(Schema):
    name: str = Field(..., min_length=1, max_length=200)
    sender: str
    templates: list[CampaignTemplateIn] = Field(..., min_length=1)
    recipients: list[RecipientIn] = Field(..., min_length=1, max_length=100_000)
    start_now: bool = False
    start_at: datetime | None = None
    priority: int = Field(0, ge=0, le=99)


class RejectionOut(Schema):
    row_number: int
    value: str
    reason: str


class CampaignOut(Schema):
    id: int
    name: str
    status: str
    kind: str
    sender: str
    priority: int
    pause_reason: str
    total: int
    sent: int
    delivered: int
    read: int
    failed: int


class ImportReportOut(Schema):
    campaign: CampaignOut
    queued: int
    rejected: int
    duplicates: int
    suppressed: int
    rejections: list[RejectionOut]


class ReasonIn(Schema):
    reason: str = Field("", max_length=200)

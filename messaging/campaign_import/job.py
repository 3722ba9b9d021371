"""What an import backend is handed (`_Job`) and what it reports (`ImportResult`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from campaigns.csv_import import TemplatePlan
from campaigns.models import Campaign, MessageTemplate, SenderNumber

REJECTIONS_SHOWN = 100


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
    undeliverable: int = 0  # marked "not on WhatsApp" by a recent 131026
    # Of `rejected`: refused by the send policy as marketing to a US number.
    us_marketing: int = 0
    rejections: list[RejectionRow] = field(default_factory=list)
    preview: list[PreviewMessage] = field(default_factory=list)
    # A preview asked to keep them (`keep_rows`): every row that would be queued, in send
    # order, as (phone, its `timezone` column or None, template id). The launch plan reads it.
    kept: list[tuple[str, str | None, int]] | None = None

    @property
    def created(self) -> Campaign:
        """The campaign an import created; a preview has none."""
        if self.campaign is None:
            raise ValueError("a preview creates no campaign")
        return self.campaign


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
    # The send policy's refusal of a valid number (messaging.policy.imports), if any.
    phone_rule: Callable[[str], str] | None = None
    keep_rows: bool = False  # a preview that fills ImportResult.kept


def count_refusal(result: ImportResult, reason: str) -> None:
    """One more rejected row; the send policy's +1 refusal is counted apart as well."""
    from messaging.policy.imports import US_MARKETING_REASON

    result.rejected += 1
    if reason == US_MARKETING_REASON:
        result.us_marketing += 1


def _preview_message(
    job: _Job, phone: str, template_id: int | None, components: list
) -> PreviewMessage:
    assert template_id is not None, "an imported row always has its template"
    template = job.templates[template_id]
    return PreviewMessage(phone, template.name, template.language, components)

"""The campaign's figures, each defined once (DEFINITIONS is shown on the campaign page).

Counters on the Campaign row are cumulative (a read message also counts as delivered and
accepted), so every figure here comes from them plus two small counts per campaign: replies
(people, from the inbox) and rows the engine still waits on beyond the plain queue (retry,
sending, unknown, held). Both are indexed and small; the list gets them for a whole page in
one query each (`attach_page_counts`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Count

from campaigns.models import Campaign
from messaging.models import OutboundMessage, OutboundStatus

# Rows the sender has not finished that are NOT plain queued rows: small sets, each an index
# range on (campaign, status). Plain queued rows are derived (total − done − these).
WAITING_STATUSES = (
    OutboundStatus.RETRY,
    OutboundStatus.SENDING,
    OutboundStatus.UNKNOWN,
    OutboundStatus.HELD,
)

DEFINITIONS: dict[str, str] = {
    "audience": "rows in the uploaded audience, before checks",
    "queued": "audience rows that became messages (not rejected, duplicate or suppressed)",
    "accepted": "messages the WhatsApp API accepted (it gave a message id)",
    "delivered": "accepted messages that reached the phone (read ones included)",
    "read": "delivered messages the person opened (where read receipts are on)",
    "replied": "people who wrote back after this campaign's message (attributed in the inbox)",
    "failed": "messages that finally failed, before or after acceptance; not retried",
    "waiting": "messages not finished: queued, waiting for a retry, in flight or held",
    "progress": "messages the sender is finished with (accepted or failed) out of queued",
    "delivered rate": "delivered ÷ accepted",
    "read rate": "read ÷ delivered",
    "reply rate": "replied ÷ delivered",
    "failure rate": "failed ÷ queued",
}


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class PageCounts:
    replied: int = 0
    waiting: int = 0  # rows in WAITING_STATUSES


@dataclass(frozen=True)
class Figures:
    audience: int
    queued: int
    accepted: int
    delivered: int
    read: int
    replied: int
    failed: int
    waiting: int  # not finished, including plain queued rows
    done: int  # finished (accepted or failed), at most queued − the counted waiting rows
    delivered_rate: float | None
    read_rate: float | None
    reply_rate: float | None
    failure_rate: float | None

    @property
    def fraction(self) -> float:
        return self.done / self.queued if self.queued else 0.0


def figures(campaign: Campaign, counts: PageCounts | None = None) -> Figures:
    """The one place each figure is computed. `counts` defaults to what `attach_page_counts`
    (or `page_counts`) left on the campaign."""
    counts = counts or getattr(campaign, "page_counts", None) or PageCounts()
    total = campaign.total
    # A row accepted then failed is in both `sent` and `failed`, so their sum can overshoot;
    # rows we know are still waiting cap it, so a campaign with retries never reads 100 %.
    done = min(campaign.sent + campaign.failed, total - counts.waiting)
    if campaign.status in (Campaign.Status.COMPLETED, Campaign.Status.CANCELLED):
        done = max(done, total - counts.waiting)
    done = max(done, 0)
    return Figures(
        audience=total
        + campaign.rejected_count
        + campaign.duplicate_count
        + campaign.suppressed_count,
        queued=total,
        accepted=campaign.sent,
        delivered=campaign.delivered,
        read=campaign.read,
        replied=counts.replied,
        failed=campaign.failed,
        waiting=total - done,
        done=done,
        delivered_rate=ratio(campaign.delivered, campaign.sent),
        read_rate=ratio(campaign.read, campaign.delivered),
        reply_rate=ratio(counts.replied, campaign.delivered),
        failure_rate=ratio(campaign.failed, total),
    )


def _replied_by_campaign(ids: list[int]) -> dict[int, int]:
    from webhooks.models import InboundMessage

    rows = (
        InboundMessage.objects.filter(campaign_id__in=ids)
        .values_list("campaign_id")
        .annotate(n=Count("user_phone", distinct=True))
        .order_by()
    )
    return dict(rows)


def _waiting_by_campaign(ids: list[int]) -> dict[int, int]:
    rows = (
        OutboundMessage.objects.filter(campaign_id__in=ids, status__in=WAITING_STATUSES)
        .values_list("campaign_id")
        .annotate(n=Count("*"))
        .order_by()
    )
    return dict(rows)


def attach_page_counts(campaigns: Iterable[Campaign]) -> None:
    """Two queries for any number of campaigns: replies and waiting rows, set on each as
    `page_counts` for `figures()`."""
    page = list(campaigns)
    ids = [c.pk for c in page]
    if not ids:
        return
    replied, waiting = _replied_by_campaign(ids), _waiting_by_campaign(ids)
    for campaign in page:
        campaign.page_counts = PageCounts(  # type: ignore[attr-defined]
            replied=replied.get(campaign.pk, 0), waiting=waiting.get(campaign.pk, 0)
        )


def page_counts(campaign: Campaign) -> PageCounts:
    attach_page_counts([campaign])
    return campaign.page_counts  # type: ignore[attr-defined]

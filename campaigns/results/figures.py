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
from messaging.models import OutboundMessage
from messaging.selectors import WAITING_STATUSES

DEFINITIONS: dict[str, str] = {
    "audience": "rows in the uploaded audience, before checks",
    "queued": "audience rows that became messages (not rejected, duplicate or suppressed)",
    "accepted": "messages the WhatsApp API accepted (it gave a message id)",
    "sent": "accepted messages WhatsApp reported sent to the phone (delivered ones included)",
    "delivered": "accepted messages that reached the phone (read ones included)",
    "read": "delivered messages the person opened (where read receipts are on)",
    "replied": "people who wrote back after this campaign's message (attributed in the inbox)",
    "failed": "messages that finally failed, before or after acceptance; not retried",
    "expired": "messages that passed the campaign's validity before they could be sent",
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
    sent_pending: int | None = None  # rows at exactly `sent`; None when not counted


@dataclass(frozen=True)
class Figures:
    audience: int
    queued: int
    accepted: int
    delivered: int
    read: int
    replied: int
    failed: int
    expired: int | None  # None until the engine keeps an `expired` counter
    sent: int | None  # None when the page did not count rows at `sent`
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
        expired=getattr(campaign, "expired", None),
        sent=None if counts.sent_pending is None else campaign.delivered + counts.sent_pending,
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


def page_replies(campaign: Campaign) -> int:
    """People who replied to one campaign: one query on the inbox's campaign index."""
    return _replied_by_campaign([campaign.pk]).get(campaign.pk, 0)


@dataclass(frozen=True)
class FunnelStep:
    key: str
    count: int
    of_previous: float | None  # this step ÷ the one before
    drop: int | None  # the one before − this step


FUNNEL = ("audience", "queued", "accepted", "sent", "delivered", "read", "replied")


def funnel(f: Figures) -> list[FunnelStep]:
    """audience → queued → accepted → sent → delivered → read → replied; `sent` is skipped
    when it was not counted."""
    steps: list[FunnelStep] = []
    previous: int | None = None
    for key in FUNNEL:
        count = getattr(f, key)
        if count is None:
            continue
        steps.append(
            FunnelStep(
                key,
                count,
                None if previous is None else ratio(count, previous),
                None if previous is None else previous - count,
            )
        )
        previous = count
    return steps

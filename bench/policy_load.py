"""The send policy under load, for `bench.engine --policies`.

Every rule the claim enforces is switched on for the benchmark's campaign, so the figures of
`bench.engine` measure the engine with its policy: recipients in Portugal (one zone,
Europe/Lisbon, so the window is judged per row), marketing templates (the frequency cap counts
them), a sending window open now, `valid_until` tomorrow, a portfolio whose messaging limit
leaves room for the whole campaign (the ledger still admits every recipient), and 1 % of the
numbers suppressed after their rows were queued (so the claim itself must cancel them).

While the campaign runs, `OptOutsDuringRun` opts numbers out the way staff do
(`messaging.policy.optout.opt_out`), twice a second: some whose rows are next in line (still
queued) and some whose rows a worker holds right now (claimed, not yet answered). It records how
long each opt-out took to commit (its queued rows are cancelled in that transaction) and, after
the run, what became of every such row: cancelled, or sent, and if sent, how long after the
opt-out committed the API accepted it.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

PHONE_PREFIX = "+35191"  # + 7 digits: Portuguese mobile numbers, one zone
PRE_SUPPRESSED_EVERY = 100  # 1 % of the numbers, suppressed once their rows are queued
LISBON = ZoneInfo("Europe/Lisbon")


def portfolio_for(messages: int) -> Any:
    """A portfolio whose tier leaves room for every recipient (the ledger is still consulted)."""
    from campaigns.models import Portfolio

    tier = "TIER_100K" if messages <= 100_000 else "TIER_UNLIMITED"
    return Portfolio.objects.create(business_id="bench-portfolio", messaging_tier=tier)


def open_window_now(now: datetime) -> tuple[Any, Any]:
    """A window open now in Lisbon (three hours ago to five from now, maybe over midnight)."""
    local = now.astimezone(LISBON).replace(minute=0, second=0, microsecond=0)
    return (local - timedelta(hours=3)).time(), (local + timedelta(hours=5)).time()


def activate(campaign: Any) -> None:
    """Switch every policy rule on for `campaign`, whose rows are already queued."""
    from django.db import connection
    from django.utils import timezone

    from campaigns.models import Suppression
    from campaigns.suppression import phone_hashes
    from messaging.models import OutboundMessage

    now = timezone.now()
    campaign.valid_until = now + timedelta(days=1)
    campaign.window_start, campaign.window_end = open_window_now(now)
    campaign.window_days = ""
    campaign.frequency_cap = "3/7d"
    campaign.save()
    phones = list(
        OutboundMessage.objects.filter(campaign=campaign)
        .order_by("id")
        .values_list("phone", flat=True)[::PRE_SUPPRESSED_EVERY]
    )
    hashes = phone_hashes(phones)
    # Written directly (not through opt_out, which would cancel the rows at once): the claim
    # must find these and cancel them itself.
    Suppression.objects.bulk_create(
        [Suppression(phone=p, phone_hash=hashes[p], source="bench") for p in phones]
    )
    connection.close()


class OptOutsDuringRun:
    """Staff opting numbers out while the campaign runs (a thread of the benchmark's parent)."""

    INTERVAL_S = 0.5
    QUEUED_PER_ROUND = 3
    CLAIMED_PER_ROUND = 2

    def __init__(self, campaign_id: int, *, deadline: float) -> None:
        self.campaign_id = campaign_id
        self.deadline = deadline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="opt-outs", daemon=True)
        # phone -> (what its row was when opted out, when the opt-out committed, seconds taken)
        self.opted_out: dict[str, tuple[str, datetime, float]] = {}
        self.error: str = ""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        from django.db import connection

        try:
            while not self._stop.wait(self.INTERVAL_S) and time.monotonic() < self.deadline:
                self._round()
        except Exception as error:  # reported with the figures; the run itself goes on
            self.error = repr(error)
        finally:
            connection.close()

    def _round(self) -> None:
        from django.db import transaction
        from django.utils import timezone

        from messaging.models import OutboundMessage
        from messaging.models import OutboundStatus as S
        from messaging.policy.optout import opt_out

        rows = OutboundMessage.objects.filter(campaign_id=self.campaign_id)
        started = time.perf_counter()
        with transaction.atomic():
            # Locked, so no worker claims them between this look and the opt-out: "queued"
            # means the opt-out itself found them queued.
            queued = list(
                rows.filter(status=S.QUEUED)
                .exclude(phone__in=list(self.opted_out))
                .order_by("next_attempt_at", "id")
                .select_for_update(skip_locked=True)
                .values_list("phone", flat=True)[: self.QUEUED_PER_ROUND]
            )
            # The last rows claimed: a worker holds them, still waiting for their slots.
            claimed = list(
                rows.filter(status=S.SENDING)
                .exclude(phone__in=list(self.opted_out))
                .order_by("-id")
                .values_list("phone", flat=True)[: self.CLAIMED_PER_ROUND]
            )
            picks = [("queued", p) for p in queued] + [("claimed", p) for p in claimed]
            if not picks:
                return
            opt_out(phones=[p for _, p in picks], source="bench", reason="during the run")
        took = time.perf_counter() - started
        committed = timezone.now()
        for state, phone in picks:
            self.opted_out[phone] = (state, committed, took)

    def report(self) -> dict[str, Any]:
        """What became of every row opted out during the run, and of the pre-suppressed ones."""
        from django.db import connection

        from campaigns.models import Suppression
        from messaging.models import OutboundMessage
        from messaging.models import OutboundStatus as S

        final = {
            phone: (status, accepted_at)
            for phone, status, accepted_at in OutboundMessage.objects.filter(
                campaign_id=self.campaign_id, phone__in=list(self.opted_out)
            ).values_list("phone", "status", "accepted_at")
        }
        figures: dict[str, Any] = {"error": self.error}
        for state in ("queued", "claimed"):
            phones = [p for p, (s, _, _) in self.opted_out.items() if s == state]
            sent = [p for p in phones if final[p][1] is not None]
            late = [(final[p][1] - self.opted_out[p][1]).total_seconds() for p in sent]
            figures[state] = {
                "opted_out": len(phones),
                "cancelled": sum(1 for p in phones if final[p][0] == S.CANCELLED),
                "sent": len(sent),
                "accepted_after_opt_out_s_max": max(late, default=None),
            }
        took = [t for _, _, t in self.opted_out.values()]
        figures["opt_out_commit_s_max"] = max(took, default=None)
        pre = list(
            Suppression.objects.filter(source="bench", reason="").values_list("phone", flat=True)
        )
        pre_rows = OutboundMessage.objects.filter(campaign_id=self.campaign_id, phone__in=pre)
        figures["pre_suppressed"] = {
            "numbers": len(pre),
            "cancelled_by_the_claim": pre_rows.filter(status=S.CANCELLED).count(),
            "sent": pre_rows.filter(accepted_at__isnull=False).count(),
        }
        connection.close()
        return figures


def print_report(figures: dict[str, Any]) -> None:
    pre = figures["pre_suppressed"]
    print(
        f"[{'ok ' if pre['sent'] == 0 else 'BAD'}] suppressed before the claim: "
        f"{pre['numbers']} numbers, {pre['cancelled_by_the_claim']} cancelled by the claim, "
        f"{pre['sent']} sent"
    )
    queued = figures["queued"]
    print(
        f"[{'ok ' if queued['sent'] == 0 else 'BAD'}] opted out while queued (next in line): "
        f"{queued['opted_out']}, cancelled {queued['cancelled']}, sent {queued['sent']}; "
        f"slowest opt-out commit {figures['opt_out_commit_s_max'] or 0:.3f} s "
        f"(its queued rows are cancelled in that transaction)"
    )
    claimed = figures["claimed"]
    late = claimed["accepted_after_opt_out_s_max"]
    print(
        f"      opted out while a worker held the row: {claimed['opted_out']}, withdrawn "
        f"{claimed['cancelled']}, already on its way {claimed['sent']}"
        + (f" (latest accepted {late:.3f} s after the opt-out)" if late is not None else "")
    )
    if figures["error"]:
        print(f"[BAD] the opt-out thread stopped: {figures['error']}")

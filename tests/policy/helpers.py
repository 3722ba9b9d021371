"""Queue rows to chosen numbers, and a sender run with an injected clock."""

from __future__ import annotations

import threading
import time
from datetime import datetime

from django.db import connection
from django.utils import timezone

from campaigns.models import Contact
from messaging.models import OutboundMessage
from messaging.sender import NumberSender
from tests import factories


def campaign_to(sender, template, phones, *, status="running", attributes=None, **fields):
    """A campaign with one queued row per number of `phones` (contacts made as needed)."""
    campaign = factories.CampaignFactory(sender=sender, status=status, total=len(phones), **fields)
    factories.CampaignTemplateFactory(campaign=campaign, template=template)
    now = timezone.now()
    rows = []
    for phone in phones:
        contact, _ = Contact.objects.get_or_create(
            phone=phone, defaults={"attributes": (attributes or {}).get(phone, {})}
        )
        rows.append(
            OutboundMessage(
                campaign=campaign,
                contact=contact,
                template=template,
                sender=sender,
                phone=phone,
                parameters=[],
                next_attempt_at=now,
            )
        )
    OutboundMessage.objects.bulk_create(rows)
    return campaign


def run_until(sender, condition, *, moment: datetime | None = None, workers=1, timeout=60.0):
    """Sender loops (threads, one worker id each) whose policy clock reads `moment` (or real
    time), stopped once `condition()` holds; fails if it never does within `timeout`."""
    clock = (lambda: moment) if moment is not None else timezone.now
    stop = threading.Event()
    loops = [
        NumberSender(sender.pk, worker_id=f"w{i}", stop=stop, clock=clock) for i in range(workers)
    ]

    def run(loop):
        try:
            loop.run(max_seconds=timeout, until_idle=False)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(loop,)) for loop in loops]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    try:
        while not condition():
            assert time.monotonic() < deadline, "the sender never reached the expected state"
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    return loops


def phones(prefix: str, count: int, start: int = 0) -> list[str]:
    return [f"{prefix}{start + i:04d}" for i in range(count)]

"""Writes to contacts and the suppression list that more than one caller needs."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from campaigns.models import Contact, Suppression
from campaigns.suppression import phone_hashes


@transaction.atomic
def suppress_numbers(*, phones: Iterable[str], source: str, reason: str = "") -> int:
    """Add numbers to the suppression list and mark their contacts opted out. Idempotent."""
    phones = sorted(set(phones))
    if not phones:
        return 0
    now = timezone.now()
    hashes = phone_hashes(phones)
    Suppression.objects.bulk_create(
        [
            Suppression(phone=p, phone_hash=hashes[p], source=source, reason=reason[:255])
            for p in phones
        ],
        ignore_conflicts=True,
    )
    Contact.objects.filter(phone__in=phones, opted_out_at__isnull=True).update(opted_out_at=now)
    return len(phones)


@transaction.atomic
def unsuppress_numbers(*, phones: Iterable[str]) -> int:
    """Staff's opt-out toggle back on: the numbers may be messaged again."""
    phones = list(phones)
    Contact.objects.filter(phone__in=phones).update(opted_out_at=None)
    deleted, _ = Suppression.objects.filter(phone__in=phones).delete()
    return deleted

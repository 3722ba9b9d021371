"""The rules an import (CSV, audience, copy) applies to each number before it is queued.

- Marketing templates to US numbers are refused with a reason: Meta does not deliver them
  (131049). POLICY_BLOCK_US_MARKETING turns this off if Meta changes it. Utility and
  authentication templates still go.
- A number marked "not on WhatsApp" (131026) within POLICY_UNDELIVERABLE_DAYS is left out and
  counted, not queued.
Suppressed numbers are left out by `optout.suppressed_sql` / `optout.suppressed_among`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import phonenumbers
from django.conf import settings

from campaigns.models import Contact
from messaging.policy.optout import undeliverable_since

US_MARKETING_REASON = "Meta does not deliver marketing templates to US numbers"


def us_marketing_reason(phone: str) -> str:
    """The refusal for a marketing template to `phone` (E.164), or ""."""
    if not phone.startswith("+1"):
        return ""
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(phone, None))
    except phonenumbers.NumberParseException:
        return ""
    return US_MARKETING_REASON if region == "US" else ""


def phone_rule(categories: Iterable[str]) -> Callable[[str], str] | None:
    """The per-number check for a campaign whose templates have `categories`: a campaign with
    a marketing template is a marketing campaign (its rows may get that template)."""
    if settings.POLICY_BLOCK_US_MARKETING and any(c.upper() == "MARKETING" for c in categories):
        return us_marketing_reason
    return None


def undeliverable_sql(phone: str) -> tuple[str, list[Any]]:
    """SQL true when the number in column expression `phone` was marked not on WhatsApp
    recently, with its parameter."""
    contact = Contact._meta.db_table
    return (
        f"EXISTS (SELECT 1 FROM {contact} c WHERE c.phone = {phone} "  # noqa: S608
        "AND c.undeliverable_at >= %s)",
        [undeliverable_since()],
    )


def undeliverable_among(phones: list[str]) -> set[str]:
    return set(
        Contact.objects.filter(
            phone__in=phones, undeliverable_at__gte=undeliverable_since()
        ).values_list("phone", flat=True)
    )

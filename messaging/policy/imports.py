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

from django.conf import settings
from django.db import connection, models
from django.db.models import QuerySet, Value

from campaigns.models import Contact
from campaigns.suppression import phone_hashes, suppressions_matching
from messaging.policy.numbers import US_MARKETING_REASON as US_MARKETING_REASON
from messaging.policy.numbers import us_marketing_reason
from messaging.policy.optout import suppressed_sql, undeliverable_since
from messaging.sql_paths import postgres_fast_paths

# Why `refused_among` refuses a number.
SUPPRESSED = "suppressed"
UNDELIVERABLE = "undeliverable"


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


def undeliverable_contacts(phones: Iterable[str]) -> QuerySet[Contact]:
    """The contacts among `phones` marked not on WhatsApp recently (the rule, as a queryset)."""
    return Contact.objects.filter(
        phone__in=list(phones), undeliverable_at__gte=undeliverable_since()
    )


def undeliverable_among(phones: list[str]) -> set[str]:
    return set(undeliverable_contacts(phones).values_list("phone", flat=True))


def refused_among(phones: Iterable[str]) -> dict[str, str]:
    """The numbers of `phones` no new message may go to, each with why: SUPPRESSED (the rule
    of `optout.suppressed_among`) before UNDELIVERABLE (`undeliverable_among`), in one query:
    a single transactional send cannot afford a round trip per rule."""
    numbers = sorted(set(phones))
    if not numbers:
        return {}
    if postgres_fast_paths():
        return _refused_sql(numbers)
    hashes = phone_hashes(numbers)
    phone_of = {h: p for p, h in hashes.items()}
    why = models.CharField()
    suppressed = (
        suppressions_matching(hashes.values())
        .annotate(why=Value(SUPPRESSED, output_field=why))
        .values_list("phone_hash", "why")
    )
    unreachable = (
        undeliverable_contacts(numbers)
        .annotate(why=Value(UNDELIVERABLE, output_field=why))
        .values_list("phone", "why")
    )
    refused: dict[str, str] = {}
    for found, reason in suppressed.union(unreachable, all=True):
        if reason == SUPPRESSED:
            refused[phone_of[found]] = SUPPRESSED
        else:
            refused.setdefault(found, UNDELIVERABLE)
    return refused


def _refused_sql(numbers: list[str]) -> dict[str, str]:
    # The same two rules as their SQL twins (`optout.suppressed_sql`, `undeliverable_sql`), in
    # text that does not depend on how many numbers there are (building the ORM union cost
    # more than running it).
    suppressed, s_params = suppressed_sql("p.phone")
    unreachable, u_params = undeliverable_sql("p.phone")
    sql = f"SELECT p.phone, {suppressed}, {unreachable} FROM unnest(%s::text[]) AS p(phone)"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [*s_params, *u_params, numbers])
        rows = cursor.fetchall()
    return {
        phone: SUPPRESSED if suppressed else UNDELIVERABLE
        for phone, suppressed, undeliverable in rows
        if suppressed or undeliverable
    }

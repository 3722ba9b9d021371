"""Segments: contacts chosen by conditions on their fields and attributes, one per line.

    city = Lisbon
    tier != gold
    name contains Ana
    phone starts with +351
    vip is set / vip is not set
    last_reply within 30 days / no reply within 30 days

Every line must hold. A bad line is refused with its number and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.apps import apps
from django.db.models import Q, QuerySet
from django.utils import timezone

from campaigns.models import Contact, Segment

_REPLY = re.compile(r"(last_reply|no reply) within (\d{1,4}) days?", re.IGNORECASE)
_CONDITION = re.compile(
    r"(?P<field>[A-Za-z_][\w.-]*)\s*(?P<op>!=|=|contains|starts with|is not set|is set)"
    r"\s*(?P<value>.*)",
    re.IGNORECASE,
)
_VALUELESS = ("is set", "is not set")
# Contact columns a condition may name; anything else is an attribute (a CSV column).
_COLUMNS = ("phone", "name", "wa_id")


class SegmentError(ValueError):
    """A rule that cannot be read; the message names the line."""


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str = ""
    days: int = 0


def parse_rules(rules: str) -> list[Condition]:
    conditions = []
    for number, line in enumerate((rules or "").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if reply := _REPLY.fullmatch(line):
            op = "replied" if reply[1].lower() == "last_reply" else "not_replied"
            conditions.append(Condition("last_reply", op, days=int(reply[2])))
            continue
        match = _CONDITION.fullmatch(line)
        if match is None:
            raise SegmentError(
                f"line {number}: {line!r} is not a condition; write e.g. 'city = Lisbon', "
                "'vip is set' or 'last_reply within 30 days'"
            )
        op, value = match["op"].lower(), match["value"].strip()
        if op in _VALUELESS and value:
            raise SegmentError(f"line {number}: {op!r} takes no value, got {value!r}")
        if op not in _VALUELESS and not value:
            raise SegmentError(f"line {number}: {match['field']} {op} what? the value is missing")
        conditions.append(Condition(match["field"].lower(), op, value))
    if not conditions:
        raise SegmentError("a segment needs at least one condition")
    return conditions


def _condition_q(condition: Condition, now: datetime) -> Q:
    if condition.field == "last_reply":
        inbound = apps.get_model("webhooks", "InboundMessage")
        since = now - timedelta(days=condition.days)
        # One scan of the recent inbound messages, hashed: not a probe per contact.
        recent = inbound.objects.filter(timestamp__gte=since).values("user_phone")
        q = Q(phone__in=recent)
        return q if condition.op == "replied" else ~q
    key = condition.field if condition.field in _COLUMNS else f"attributes__{condition.field}"
    if condition.op == "is set":
        return Q(**{f"{key}__isnull": False}) & ~Q(**{key: ""})
    if condition.op == "is not set":
        return Q(**{f"{key}__isnull": True}) | Q(**{key: ""})
    lookup = {"=": "", "!=": "", "contains": "__icontains", "starts with": "__startswith"}
    q = Q(**{f"{key}{lookup[condition.op]}": condition.value})
    if condition.op == "!=":
        # A contact without the attribute is not "city = Lisbon", so it is "city != Lisbon".
        return ~q | Q(**{f"{key}__isnull": True})
    return q


def segment_contacts(segment: Segment | str, *, now: datetime | None = None) -> QuerySet[Contact]:
    """The contacts a segment (or rules text) selects right now."""
    rules = segment.rules if isinstance(segment, Segment) else segment
    now = now or timezone.now()
    query = Q()
    for condition in parse_rules(rules):
        query &= _condition_q(condition, now)
    return Contact.objects.filter(query)

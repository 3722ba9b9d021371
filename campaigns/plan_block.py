"""The launch plan (messaging.policy.plan) as the admin pages show it: the plan's JSON (kept in
the wizard's session, or made for the campaign page) with its moments as datetimes again."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from django.core.cache import cache

from campaigns.models import Campaign
from messaging.policy.plan import SKIP_LABELS, plan_campaign

# The plan of a big campaign reads all its rows still to send (about 0.3 ms a row,
# docs/benchmarks.md): it is made again at most once a minute, or once per ten times what it
# took to make, however many people keep the page open. A plan past that is still kept a while
# for the live block (an ETA from a plan a few minutes old beats none).
PLAN_FRESH_SECONDS = 60
PLAN_COST_SHARE = 10
PLAN_KEPT_SECONDS = 600

_MOMENTS = ("start", "eta", "valid_until")


def _at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def plan_block(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """Template context for admin/campaigns/campaign/plan.html; None without a plan."""
    if not data:
        return None
    block = {**data, **{key: _at(data.get(key)) for key in _MOMENTS}}
    block["skipped_rows"] = [
        {"key": key, "label": SKIP_LABELS.get(key, key), "count": n}
        for key, n in data["skipped"].items()
        if n
    ]
    block["waves"] = [
        {**w, "starts": _at(w["starts"]), "ends": _at(w["ends"])} for w in data["waves"]
    ]
    block["zones"] = [
        {
            **z,
            "window_opens": _at(z["window_opens"]),
            "first_send": _at(z["first_send"]),
            "last_send": _at(z["last_send"]),
        }
        for z in data["zones"]
    ]
    block["waiting"] = [{**w, "until": _at(w["until"])} for w in data.get("waiting", [])]
    cost = data["cost"]
    block["cost_unpriced"] = [line for line in cost["lines"] if line["unit_price"] is None]
    block["cost_priced"] = [line for line in cost["lines"] if line["unit_price"] is not None]
    return block


def campaign_plan(campaign: Campaign, *, make: bool = True) -> dict[str, Any] | None:
    """The plan of what is left of `campaign` (plan_campaign's JSON), the one copy the page's
    plan block and its live block (ETA, waves, the canary's verdict) both read. `make=False`
    (the live block, every 2 s) never makes one: it takes the last, or None."""
    # One key per status: a running campaign never shows the plan made while it was a draft.
    key = f"wac:campaign-plan:{campaign.pk}:{campaign.status}"
    entry = cache.get(key)
    if entry is not None and (not make or entry["fresh_until"] > time.time()):
        return entry["plan"]
    if not make:
        return None
    if entry is not None and not cache.add(f"{key}:making", 1, PLAN_KEPT_SECONDS):
        return entry["plan"]  # another request is making it: the last one meanwhile
    try:
        started = time.monotonic()
        data = plan_campaign(campaign).as_json()
        fresh = max(PLAN_FRESH_SECONDS, PLAN_COST_SHARE * (time.monotonic() - started))
        entry = {"plan": data, "fresh_until": time.time() + fresh}
        cache.set(key, entry, int(fresh) + PLAN_KEPT_SECONDS)
    finally:
        cache.delete(f"{key}:making")
    return data

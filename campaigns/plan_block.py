"""The launch plan (messaging.policy.plan) as the admin pages show it: the plan's JSON (kept in
the wizard's session, or made for the campaign page) with its moments as datetimes again."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from messaging.policy.plan import SKIP_LABELS

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

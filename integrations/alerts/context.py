"""The admin banner: active alerts on every admin page for staff (one small indexed query)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def active_alerts(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if not request.path.startswith("/admin/") or user is None or not user.is_staff:
        return {}
    from integrations.alerts.service import active_alerts as alerts

    return {"active_alerts": alerts()}

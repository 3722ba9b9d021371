"""The admin banner: active alerts on every admin page for staff, read from the cache that
each evaluation writes (no database query per page), or from PostgreSQL while the cache
(Redis) is away or before the first evaluation (alerts/service.py, banner())."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def active_alerts(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if not request.path.startswith("/admin/") or user is None or not user.is_staff:
        return {}
    from messaging.integrations.alerts.service import banner

    return {"active_alerts": banner()}

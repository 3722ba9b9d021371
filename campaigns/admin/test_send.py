"""The wizard's test send: step 2's rendered message (first row or a chosen one) to staff
phones, through messaging.test_send (outside the queue and the counters)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseBase, HttpResponseRedirect
from django.urls import reverse

from campaigns import admin_wizard
from campaigns.admin_helpers import require_permission
from campaigns.models import Campaign, MessageTemplate, SenderNumber
from messaging.test_send import send_test


def test_send_view(
    model_admin: admin.ModelAdmin[Campaign], request: HttpRequest, token: str
) -> HttpResponseBase:
    require_permission(model_admin, request, "add")
    back = HttpResponseRedirect(reverse("admin:campaigns_campaign_add_confirm", args=[token]))
    data = (
        request.session.get(admin_wizard.SESSION_PREFIX + token)
        if admin_wizard._TOKEN.match(token)
        else None
    )
    if data is None or request.method != "POST":
        return back if data else HttpResponseRedirect(reverse("admin:campaigns_campaign_add"))
    preview = data["summary"]["preview"]
    try:
        row = int(request.POST.get("row", "0"))
        message = preview[row]
    except (ValueError, IndexError):
        model_admin.message_user(request, "Choose one of the rows shown.", messages.ERROR)
        return back
    sender = SenderNumber.objects.select_related("account").get(pk=data["sender_id"])
    name, _, language = message["template"].rpartition(":")
    template = MessageTemplate.objects.filter(
        pk__in=[pk for pk, _ in data["templates"]], name=name, language=language
    ).first()
    try:
        if template is None:
            raise ValueError(f"template {message['template']} is no longer there")
        sends = send_test(
            sender=sender,
            template=template,
            components=message["components"],
            to=request.POST.getlist("numbers"),
            requested_by=request.user,  # type: ignore[arg-type]
        )
    except ValueError as exc:
        model_admin.message_user(request, f"No test sent: {exc}", messages.ERROR)
        return back
    for test in sends:
        if test.wamid:
            model_admin.message_user(
                request,
                f"Test of row {row + 1} ({template}) sent to {test.to}; it is not part of any "
                "campaign.",
                messages.SUCCESS,
            )
        else:
            model_admin.message_user(
                request, f"Test to {test.to} refused: {test.error}", messages.ERROR
            )
    return back

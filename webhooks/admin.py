"""Read-only admin for webhook data, the inbox pages, and the auto-reply rules."""

from __future__ import annotations

from typing import TypedDict

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import F, Func, IntegerField, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django_stubs_ext import WithAnnotations

from campaigns.admin_helpers import CappedCountPaginator, require_permission
from campaigns.models import MessageTemplate, SenderNumber
from webhooks.inbox import conversations, person, thread
from webhooks.models import (
    AutoReply,
    AutoReplyRule,
    InboundMessage,
    RawEvent,
    RejectedWebhookItem,
    StaffReply,
    StatusLog,
)
from webhooks.staff_reply import ReplyRefused, reply_templates, send_staff_reply

UNKNOWN_USER = "(no user id)"


def thread_url(sender_id: int, user_phone: str) -> str:
    """The conversation page of any stored user value: the readable path form when the URL can
    carry it, else the query form (an empty value, a newline…), so no stored row breaks a list."""
    try:
        return reverse("admin:webhooks_inbox_thread", args=[sender_id, user_phone])
    except NoReverseMatch:
        base = reverse("admin:webhooks_inbox_user", args=[sender_id])
        return f"{base}?{urlencode({'user': user_phone})}"


class _Size(TypedDict):
    size: int  # LENGTH(body), annotated by RawEventAdmin.get_queryset


class ReadOnlyAdmin(admin.ModelAdmin):
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 100

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(RawEvent)
class RawEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "received_at", "applied_at", "size", "error")
    list_filter = (("applied_at", admin.EmptyFieldListFilter),)
    readonly_fields = ("received_at", "applied_at", "error", "body_text")
    exclude = ("body",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[RawEvent]:
        # The body can be megabytes: the list shows only its size.
        return (
            super()
            .get_queryset(request)
            .defer("body")
            # LENGTH of a bytea (PostgreSQL) or a BLOB (SQLite) is its size in bytes.
            .annotate(size=Func(F("body"), function="LENGTH", output_field=IntegerField()))
        )

    @admin.display(description="bytes")
    def size(self, obj: WithAnnotations[RawEvent, _Size]) -> int:
        return obj.size

    @admin.display(description="body")
    def body_text(self, obj: RawEvent) -> str:
        return bytes(obj.body).decode("utf-8", "replace")


@admin.register(RejectedWebhookItem)
class RejectedWebhookItemAdmin(ReadOnlyAdmin):
    """Items of signed bodies that were not applied (the rest of each body was), with why."""

    list_display = ("created_at", "raw_event", "where", "reason", "short_item")
    list_select_related = ("raw_event",)
    raw_id_fields = ("raw_event",)
    search_fields = ("reason",)

    @admin.display(description="item")
    def short_item(self, obj: RejectedWebhookItem) -> str:
        return obj.item[:120]


@admin.register(StatusLog)
class StatusLogAdmin(ReadOnlyAdmin):
    list_display = ("wamid", "status", "timestamp", "outbound_link", "error_code", "recipient_id")
    list_filter = ("status",)
    search_fields = ("=wamid",)
    raw_id_fields = ("outbound",)

    @admin.display(description="queue row", ordering="outbound_id")
    def outbound_link(self, obj: StatusLog) -> str:
        # From the id alone: showing the row itself cost one query per log line.
        if obj.outbound_id is None:
            return "–"
        url = reverse("admin:messaging_outboundmessage_change", args=[obj.outbound_id])
        return format_html('<a href="{}">#{}</a>', url, obj.outbound_id)


@admin.register(InboundMessage)
class InboundMessageAdmin(ReadOnlyAdmin):
    list_display = ("timestamp", "sender", "conversation", "type", "short_text", "campaign")
    list_select_related = ("sender", "campaign")
    list_filter = ("type",)
    search_fields = ("=user_phone", "=wamid")
    raw_id_fields = ("campaign",)
    change_list_template = "admin/webhooks/inboundmessage/change_list.html"

    @admin.display(description="text")
    def short_text(self, obj: InboundMessage) -> str:
        return obj.text[:80]

    @admin.display(description="user")
    def conversation(self, obj: InboundMessage) -> str:
        url = thread_url(obj.sender_id, obj.user_phone)
        return format_html('<a href="{}">{}</a>', url, obj.user_phone or UNKNOWN_USER)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("inbox/", view(self.inbox_view), name="webhooks_inbox"),
            path("inbox/<int:sender_id>/", view(self.thread_view), name="webhooks_inbox_user"),
            path(
                "inbox/<int:sender_id>/<path:user_phone>/",
                view(self.thread_view),
                name="webhooks_inbox_thread",
            ),
            *super().get_urls(),
        ]

    def inbox_view(self, request: HttpRequest) -> HttpResponse:
        require_permission(self, request, "view")
        sender_id = request.GET.get("sender", "")
        rows = conversations(sender_id=int(sender_id) if sender_id.isdigit() else None)
        page = Paginator(rows, 50).get_page(request.GET.get("page"))
        senders = {
            s.pk: s for s in SenderNumber.objects.filter(pk__in={r["sender_id"] for r in page})
        }
        for row in page:
            row["sender"] = senders.get(row["sender_id"])
            row["url"] = thread_url(row["sender_id"], row["user_phone"])
            row["user"] = row["user_phone"] or UNKNOWN_USER
        context = {
            **self.admin_site.each_context(request),
            "title": "Inbox",
            "opts": self.model._meta,
            "page": page,
        }
        return TemplateResponse(request, "admin/webhooks/inbox.html", context)

    def can_reply(self, request: HttpRequest) -> bool:
        # The list itself is read-only; answering people is what the change permission means.
        return request.user.has_perm("webhooks.change_inboundmessage")

    def thread_view(
        self, request: HttpRequest, sender_id: int, user_phone: str | None = None
    ) -> HttpResponse:
        require_permission(self, request, "view")
        sender = get_object_or_404(SenderNumber.objects.select_related("account"), pk=sender_id)
        if user_phone is None:  # the query form, for values a path cannot carry
            user_phone = request.GET.get("user", "")
        if request.method == "POST":
            return self._reply(request, sender, user_phone)
        who = person(sender_id=sender.pk, user_phone=user_phone)
        can_reply = self.can_reply(request) and user_phone.startswith("+")
        context = {
            **self.admin_site.each_context(request),
            "title": f"Conversation with {who.name or user_phone or UNKNOWN_USER} "
            f"on {sender.display_number}",
            "opts": self.model._meta,
            "sender": sender,
            "user_phone": user_phone,
            "person": who,
            "can_reply": can_reply,
            "reply_templates": reply_templates(sender) if can_reply and not who.window_open else [],
            "items": thread(sender_id=sender.pk, user_phone=user_phone),
        }
        return TemplateResponse(request, "admin/webhooks/thread.html", context)

    def _reply(self, request: HttpRequest, sender: SenderNumber, user_phone: str) -> HttpResponse:
        if not self.can_reply(request):
            raise PermissionDenied
        template = None
        chosen = request.POST.get("template", "")
        if chosen:
            template = (
                MessageTemplate.objects.filter(pk=int(chosen)).first() if chosen.isdigit() else None
            )
            if template is None:
                messages.error(request, "Choose one of the listed templates.")
                return HttpResponseRedirect(thread_url(sender.pk, user_phone))
        try:
            reply = send_staff_reply(
                sender=sender,
                user_phone=user_phone,
                user=request.user,
                text=request.POST.get("text", ""),
                template=template,
            )
        except ReplyRefused as exc:
            messages.error(request, f"Not sent: {exc}.")
        else:
            if reply.error:
                messages.error(request, f"WhatsApp refused the reply: {reply.error}")
            else:
                messages.success(request, "Reply sent.")
        return HttpResponseRedirect(thread_url(sender.pk, user_phone))


@admin.register(StaffReply)
class StaffReplyAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "sender",
        "user_phone",
        "template",
        "created_by",
        "wamid",
        "error",
    )
    list_select_related = ("sender", "template", "created_by")


@admin.register(AutoReply)
class AutoReplyAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "sender", "user_phone", "source", "wamid", "error")
    list_select_related = ("sender",)
    raw_id_fields = ("inbound",)


@admin.register(AutoReplyRule)
class AutoReplyRuleAdmin(admin.ModelAdmin):
    list_display = ("keyword", "active", "reply")
    list_editable = ("active",)
    search_fields = ("keyword",)

"""Raw webhook deliveries, the per-message status log and inbound messages."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from campaigns.models import Campaign, SenderNumber
from messaging.models import OutboundMessage


class RawEvent(models.Model):
    """A verified webhook body, stored in one insert before we answer 200; applied later."""

    body = models.BinaryField()
    received_at = models.DateTimeField(auto_now_add=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        indexes = [
            # The apply task drains exactly these, oldest first.
            models.Index(
                fields=["id"], condition=Q(applied_at__isnull=True), name="rawevent_pending"
            ),
        ]


class RejectedWebhookItem(models.Model):
    """An item of a signed body that could not be applied, kept for staff with the reason.

    The rest of its body was applied: one poisoned status or message never costs the others.
    `item` is the item's JSON with every non-ASCII character escaped, so a NUL or a lone
    surrogate (the usual poison) is readable here although PostgreSQL refuses it raw.
    """

    raw_event = models.ForeignKey(RawEvent, on_delete=models.CASCADE, related_name="rejected")
    where = models.CharField(max_length=255)
    reason = models.CharField(max_length=500)
    item = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "rejected webhook item"


class StatusLog(models.Model):
    """One row per (wamid, status), however many times WhatsApp repeats it."""

    wamid = models.CharField(max_length=128)
    status = models.CharField(max_length=16)
    timestamp = models.DateTimeField()
    outbound = models.ForeignKey(
        OutboundMessage,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="status_logs",
    )
    # Our queue row id echoed back; lets a status settle a row whose send answer we never saw.
    callback_data = models.CharField(max_length=512, blank=True)
    recipient_id = models.CharField(max_length=32, blank=True)
    error_code = models.IntegerField(null=True, blank=True)
    error_title = models.CharField(max_length=255, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["wamid", "status"], name="statuslog_once"),
        ]
        indexes = [
            # Statuses that matched no queue row yet, retried when the row learns its wamid.
            models.Index(
                fields=["wamid"], condition=Q(outbound__isnull=True), name="statuslog_unmatched"
            ),
        ]


class InboundMessage(models.Model):
    sender = models.ForeignKey(SenderNumber, on_delete=models.PROTECT, related_name="inbound")
    user_phone = models.CharField(max_length=32)
    user_name = models.CharField(max_length=200, blank=True)
    wamid = models.CharField(max_length=128, unique=True)
    type = models.CharField(max_length=32)
    text = models.TextField(blank=True)
    payload = models.JSONField(default=dict)
    context_wamid = models.CharField(max_length=128, blank=True)
    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    timestamp = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # A conversation: one number and one user, newest first.
            models.Index(
                fields=["sender", "user_phone", "-timestamp"], name="inbound_conversation"
            ),
        ]


class AutoReplyRule(models.Model):
    """A keyword that gets a fixed free-form answer inside the customer service window."""

    keyword = models.CharField(
        max_length=100, unique=True, help_text="Matched against the whole message, any case."
    )
    reply = models.TextField(max_length=4096)
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.keyword


class AutoReply(models.Model):
    """A free-form answer we sent (or tried to): the per-user daily limit counts these."""

    sender = models.ForeignKey(SenderNumber, on_delete=models.PROTECT, related_name="+")
    user_phone = models.CharField(max_length=32)
    inbound = models.OneToOneField(
        InboundMessage, on_delete=models.CASCADE, related_name="auto_reply"
    )
    text = models.TextField()
    source = models.CharField(max_length=16)  # "rule" or "llm"
    wamid = models.CharField(max_length=128, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "auto replies"
        indexes = [
            # The daily limit and the inbox thread: replies to one user, newest first.
            models.Index(fields=["sender", "user_phone", "-created_at"], name="autoreply_user"),
        ]


class StaffReply(models.Model):
    """A message staff sent from the inbox: free text inside the 24 h window, else a template."""

    sender = models.ForeignKey(SenderNumber, on_delete=models.PROTECT, related_name="+")
    user_phone = models.CharField(max_length=32)
    text = models.TextField(blank=True)  # what the person sees (a template rendered)
    template = models.ForeignKey(
        "campaigns.MessageTemplate", null=True, blank=True, on_delete=models.PROTECT
    )
    wamid = models.CharField(max_length=128, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "staff replies"
        indexes = [
            # The inbox thread: replies to one user on one number, newest first.
            models.Index(fields=["sender", "user_phone", "-created_at"], name="staffreply_user"),
        ]

"""API keys and idempotent requests (the way in); the other models of this app follow them."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.functions import Now


class ApiKey(models.Model):
    """A client of the HTTP API. Only a hash of the key is stored; the key is shown once."""

    class Scope(models.TextChoices):
        MESSAGES_SEND = "messages:send"
        MESSAGES_READ = "messages:read"
        CAMPAIGNS_READ = "campaigns:read"
        CAMPAIGNS_WRITE = "campaigns:write"
        CONTACTS_READ = "contacts:read"
        CONTACTS_WRITE = "contacts:write"

    name = models.CharField(max_length=100, unique=True)
    # The key's public first part, to find its row; the rest is secret.
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField("SHA-256 of the key", max_length=64, editable=False)
    scopes = models.JSONField(default=list, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(default=1200)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class IdempotentRequest(models.Model):
    """A request sent with an Idempotency-Key: its answer, replayed for a repeat of the key.

    The unique constraint is what makes concurrent identical requests safe: the second insert
    waits for the first transaction and then finds its row.
    """

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # What was asked (method, path, body), so a key reused for another request is refused.
    fingerprint = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(default=0)
    response = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_key_once"),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]


class EventType(models.TextChoices):
    MESSAGE_ACCEPTED = "message.accepted"
    MESSAGE_SENT = "message.sent"
    MESSAGE_DELIVERED = "message.delivered"
    MESSAGE_READ = "message.read"
    MESSAGE_FAILED = "message.failed"
    MESSAGE_EXPIRED = "message.expired"
    MESSAGE_RECEIVED = "message.received"
    CONTACT_OPTED_OUT = "contact.opted_out"
    CONTACT_OPTED_IN = "contact.opted_in"
    CAMPAIGN_SCHEDULED = "campaign.scheduled"
    CAMPAIGN_STARTED = "campaign.running"
    CAMPAIGN_PAUSED = "campaign.paused"
    CAMPAIGN_COMPLETED = "campaign.completed"
    CAMPAIGN_CANCELLED = "campaign.cancelled"
    CAMPAIGN_DRAFT = "campaign.draft"
    CAMPAIGN_EXPIRED = "campaign.expired"
    TEMPLATE_STATUS = "template.status_changed"
    TEMPLATE_QUALITY = "template.quality_changed"
    NUMBER_QUALITY = "number.quality_changed"


class EventSubscription(models.Model):
    """Another system's URL that gets our events, signed with its secret."""

    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500)
    # Kept as is (not hashed): every delivery is signed with it.
    secret = models.CharField(max_length=128, help_text="HMAC-SHA256 key of the signature")
    event_types = models.JSONField(default=list, help_text="event types to send; empty = all")
    active = models.BooleanField(default=True)
    # 1: one event per POST; more: a JSON {"events": [...]} of up to this many per POST.
    max_batch = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class OutboxEvent(models.Model):
    """One event for one subscription, written in the transaction of the change it reports."""

    class State(models.IntegerChoices):
        PENDING = 0, "pending"
        DELIVERED = 1, "delivered"
        DEAD = 2, "dead letter"

    subscription = models.ForeignKey(
        EventSubscription, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    event_type = models.CharField(max_length=40)
    payload = models.JSONField()
    # Database defaults: the hot paths insert these rows set-based in raw SQL.
    created_at = models.DateTimeField(db_default=Now())
    state = models.PositiveSmallIntegerField(choices=State.choices, db_default=0)
    attempts = models.PositiveSmallIntegerField(db_default=0)
    next_attempt_at = models.DateTimeField(db_default=Now())
    last_error = models.CharField(max_length=300, db_default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    # The event id of a message event that came from the log (`evt_m<entry>_<position>`,
    # moved here by a failed POST), kept so a receiver de-duplicates across the move.
    event_key = models.CharField(max_length=40, db_default="")

    class Meta:
        indexes = [
            # The deliverer's read: a subscription's pending events in order. Partial, so it
            # holds only the backlog.
            models.Index(
                fields=["subscription", "id"], condition=models.Q(state=0), name="outbox_pending"
            ),
            models.Index(
                fields=["subscription", "-id"], condition=models.Q(state=2), name="outbox_dead"
            ),
            models.Index(fields=["created_at"], name="outbox_created"),
        ]

    @property
    def event_id(self) -> str:
        return self.event_key or f"evt_{self.pk}"


class PgArray(models.Field):
    """A PostgreSQL array column, read and written by raw SQL only (the hot paths); text
    elsewhere (the SQLite quickstart never writes these tables)."""

    def __init__(self, *args: Any, base_type: str = "bigint", **kwargs: Any) -> None:
        self.base_type = base_type
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["base_type"] = self.base_type
        return name, path, args, kwargs

    def db_type(self, connection: BaseDatabaseWrapper) -> str:
        return f"{self.base_type}[]" if connection.vendor == "postgresql" else "text"


class MessageEventLog(models.Model):
    """The message status events of one transaction: which queue rows moved to which status.

    Written by `publish_message_statuses` in the transaction of the moves (one narrow row, no
    payload, no row per subscription); each subscription reads it through its own cursor
    (`EventLogCursor`) and PostgreSQL builds the payloads from the queue rows at delivery.
    """

    # The writing transaction (pg_current_xact_id()): what tells a reader that no transaction
    # still running can add an entry below the reader's horizon.
    xid = models.BigIntegerField()
    created_at = models.DateTimeField(db_default=Now())
    ids = PgArray(base_type="bigint")
    statuses = PgArray(base_type="smallint")
    size = models.PositiveSmallIntegerField()

    class Meta:
        indexes = [models.Index(fields=["xid"], name="event_log_xid")]


class EventLogCursor(models.Model):
    """How far one subscription has read the message event log (delivery.py says how).

    Delivered = every entry with `xid` below `xid`, the entries listed in `done`, and the
    first `head_pos` events of entry `head`. A table of its own, so saving a subscription in
    admin never writes back a stale position.
    """

    subscription = models.OneToOneField(
        EventSubscription, on_delete=models.CASCADE, primary_key=True, related_name="log_cursor"
    )
    xid = models.BigIntegerField()
    done = PgArray(base_type="bigint", null=True)
    head = models.BigIntegerField(default=0)
    head_pos = models.IntegerField(default=0)


class Alert(models.Model):
    """A condition staff must know about, from when it was raised until it resolved."""

    key = models.CharField(max_length=120, unique=True)  # condition[:subject]
    condition = models.CharField(max_length=40)
    message = models.CharField(max_length=500)
    active = models.BooleanField(default=True)
    raised_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["key"], condition=models.Q(active=True), name="alert_active")
        ]
        permissions = [("receive_alerts", "Receives alert e-mails")]

    def __str__(self) -> str:
        return self.message

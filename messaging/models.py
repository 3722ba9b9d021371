"""The send queue: one row per campaign and contact, from queued to a final state."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import models
from django.db.models import F, Q, Subquery

from campaigns.models import Campaign, Contact, MessageTemplate, Portfolio, SenderNumber, TierSource
from messaging.json_text import JsonTextField
from messaging.sql_paths import AnyOf


class OutboundStatus(models.IntegerChoices):
    # Still to send (the sender's partial index covers exactly these two).
    QUEUED = 0, "queued"
    RETRY = 1, "retry"
    # Claimed by a worker; the HTTP request may be in flight.
    SENDING = 2, "sending"
    # The request may have reached the API but we never saw the answer: waits for a webhook
    # (matched by biz_opaque_callback_data) or the reconciliation window.
    UNKNOWN = 3, "unknown"
    # Left for staff to decide (unknown-outcome policy "hold", or a paused template).
    HELD = 4, "held"
    # Accepted by the API (we have the wamid); the webhook statuses follow.
    ACCEPTED = 10, "accepted"
    SENT = 11, "sent"
    DELIVERED = 12, "delivered"
    READ = 13, "read"
    FAILED = 20, "failed"
    CANCELLED = 21, "cancelled"
    # Could not go before its valid_until (the campaign's or its own); never sent.
    EXPIRED = 22, "expired"


PENDING_STATUSES = (OutboundStatus.QUEUED, OutboundStatus.RETRY)
# Once here, the sender is done with the row (webhooks may still move it up the ladder).
FINAL_STATUSES = (
    OutboundStatus.ACCEPTED,
    OutboundStatus.SENT,
    OutboundStatus.DELIVERED,
    OutboundStatus.READ,
    OutboundStatus.FAILED,
    OutboundStatus.CANCELLED,
    OutboundStatus.EXPIRED,
)


class OutboundMessage(models.Model):
    # Every imported row pays for each index entry and each FK check (the 1M-row import is
    # bound by them), so: no single-column FK indexes (campaign leads the composite indexes;
    # the others are only looked up when someone deletes a contact, template or number, which
    # PROTECT refuses anyway), and no database FK triggers on `template` and `sender`, which
    # are copies of what the campaign's own constraints already guarantee. Django still
    # enforces PROTECT on delete.
    # No database FK trigger on the campaign either: an import creates the campaign in the
    # same transaction as its rows, and the trigger's per-row check was ≈ 3 µs of the queue
    # insert's ≈ 17 µs a row (docs/benchmarks.md). Django's CASCADE deletes the rows with
    # their campaign, as before.
    campaign = models.ForeignKey(
        Campaign,
        on_delete=models.CASCADE,
        related_name="messages",
        db_index=False,
        db_constraint=False,
    )
    # No database FK trigger either (one per queued row: 6 µs of the import's ≈ 30 µs per row
    # in PostgreSQL, docs/benchmarks.md): contacts are never deleted, they are erased in place
    # (messaging.erasure), and the contacts admin offers no delete.
    contact = models.ForeignKey(
        Contact,
        on_delete=models.PROTECT,
        related_name="messages",
        db_index=False,
        db_constraint=False,
    )
    # Null for a free-form text message (API sends inside the customer service window): its
    # `parameters` then hold the Graph API's `text` object instead of template components.
    template = models.ForeignKey(
        MessageTemplate,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        db_index=False,
        db_constraint=False,
    )
    # Denormalised from the campaign and contact so the hot path reads one table.
    sender = models.ForeignKey(
        SenderNumber,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    phone = models.CharField(max_length=20)
    # Rendered template components (the Graph API's `components` list) for this contact;
    # `json`, not `jsonb`, on PostgreSQL (messaging/json_text.py says why).
    parameters = JsonTextField(default=list)
    priority = models.SmallIntegerField(default=0)
    # A row of a transactional stream (Campaign.Kind.TRANSACTIONAL), which may message one
    # contact many times. A database default, so the importer's COPY needs no new column.
    transactional = models.BooleanField(default=False, db_default=False)
    # A message of its own validity (an API send's ttl / valid_until): not sent by then, it
    # ends `expired`, like every row of a campaign past the campaign's valid_until
    # (messaging.policy.gate.deadline takes the earlier of the two).
    valid_until = models.DateTimeField(null=True, blank=True)

    status = models.PositiveSmallIntegerField(
        choices=OutboundStatus.choices, default=OutboundStatus.QUEUED
    )
    # Tries of this row the sender made or is making: a claim counts one, a claim given back
    # unsent (release, the policy's gate) gives it back, and so does a claim lost with its
    # worker (the lease path), because nobody knows whether that send reached the API. The
    # attempt caps of the error actions (messaging.policy.actions.judge) read this.
    attempts = models.PositiveSmallIntegerField(default=0)
    # Claims lost with a dead worker (lease expired): apart from `attempts`, so a crash does
    # not use up the tries an API error allows (docs/architecture.md, "In-doubt sends").
    lost_claims = models.PositiveSmallIntegerField(default=0, db_default=0)
    next_attempt_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True)

    wamid = models.CharField(max_length=128, null=True, blank=True)
    error_code = models.IntegerField(null=True, blank=True)
    error_category = models.CharField(max_length=32, blank=True)
    error_detail = models.CharField(max_length=500, blank=True)

    # Not indexed, so webhook updates of these stay HOT-eligible.
    accepted_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    # When it ended `expired` (never sent: past its deadline, messaging.policy.gate).
    expired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # A double enqueue is impossible, whatever the importer does. Transactional rows
            # are deduplicated by their idempotency key instead.
            models.UniqueConstraint(
                fields=["campaign", "contact"],
                condition=Q(transactional=False),
                name="outbound_once_per_contact",
            ),
            # Partial: the million queued rows of a fresh campaign have no wamid and no entry.
            models.UniqueConstraint(
                fields=["wamid"], condition=Q(wamid__isnull=False), name="outbound_wamid_unique"
            ),
        ]
        indexes = [
            # The sender's claim: due rows of one campaign in send order (id = interleaved
            # order). Partial, so it holds only what is still to send and stays small.
            models.Index(
                fields=["campaign", "status", "next_attempt_at", "id"],
                condition=Q(status__in=[0, 1]),
                name="outbound_due",
            ),
            # Counts by status per campaign (campaign_status, admin detail, completion check).
            models.Index(fields=["campaign", "status"], name="outbound_campaign_status"),
            # Lease recovery: claims whose worker may have died; reconciliation of unknowns.
            models.Index(
                fields=["claimed_at"], condition=Q(status__in=[2, 3]), name="outbound_in_doubt"
            ),
            # Maintenance's expiry of unsent rows past their own valid_until: only the few
            # rows that have one and are still to send.
            models.Index(
                fields=["valid_until"],
                condition=Q(status__in=[0, 1], valid_until__isnull=False),
                name="outbound_row_validity",
            ),
            # Messages to one person, newest first (`to_numbers`: the inbox thread, reply
            # attribution, the frequency cap, opt-out cancellation, erasure).
            models.Index(fields=["contact", "-id"], name="outbound_contact"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.phone} {self.get_status_display()}"


def to_numbers(phones: Iterable[str]) -> Q:
    """A filter of queue rows: those addressed to any of `phones` (every campaign, every
    status). The one way every reader finds a person's messages.

    Found through their contacts, on `outbound_contact` (contact, -id): a row's `phone` is
    always its contact's (each path that queues a row looks the contact up by that number),
    and a contact's number never changes but by erasure, which rewrites both (the contacts
    admin shows it read-only once saved). An index on the row's own phone cost the 1 M-row
    import ≈ 2.5 µs a row, its entries landing on random pages; new contacts' ids rise in
    send order, so these entries append (docs/benchmarks.md)."""
    numbers = sorted(set(phones))
    contacts = Contact.objects.filter(AnyOf(F("phone"), numbers)).values("pk")
    if len(numbers) == 1:
        # One person: the contact's id is one value of the query (a scalar subquery), so the
        # index also hands the rows over newest first (the inbox thread's ORDER BY id DESC
        # LIMIT) whatever the planner guesses of a semi-join's size.
        return Q(contact_id=Subquery(contacts[:1]))
    return Q(contact__in=contacts)


class StatusEvidence(models.Model):
    """Proof that status webhooks arrive for a sender number: the latest time (ours) by which
    one of its messages whose status webhook was applied had been sent (its `accepted_at`, or
    its `claimed_at` when the webhook came before our answer). An in-doubt row older than that
    is re-sent under the `evidence` policy: had the API taken it, its own webhook would have
    come too (messaging.evidence)."""

    sender = models.OneToOneField(
        SenderNumber, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    accepted_until = models.DateTimeField()
    # When the webhook that moved `accepted_until` was applied.
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"statuses seen for number {self.sender_id} up to {self.accepted_until}"


class PreviewSend(models.Model):
    """A message sent from the wizard's preview to a staff phone: outside every campaign's
    queue and counters, its callback data marked "test:" so no status ever moves a queue row."""

    sender = models.ForeignKey(SenderNumber, on_delete=models.CASCADE, related_name="+")
    template = models.ForeignKey(MessageTemplate, on_delete=models.CASCADE, related_name="+")
    to = models.CharField(max_length=20)
    parameters = models.JSONField(default=list)
    wamid = models.CharField(max_length=128, blank=True)
    error = models.CharField(max_length=500, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"test {self.template} to {self.to}"


class NumberChange(models.Model):
    """One change of a messaging limit, a number's quality or its status, whoever made it
    (sync_numbers, a webhook, staff): the history staff read and what the
    `messaging_limit_changed` alert announces, once per row."""

    class Field(models.TextChoices):
        TIER = "tier", "messaging limit"
        QUALITY = "quality", "quality rating"
        STATUS = "status", "status"

    # Exactly one of the two: a portfolio's limit, or a number's limit, quality or status.
    portfolio = models.ForeignKey(
        Portfolio, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    sender = models.ForeignKey(
        SenderNumber, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    field = models.CharField(max_length=16, choices=Field.choices)
    old = models.CharField(max_length=32, blank=True)
    new = models.CharField(max_length=32)
    # "up", "down" or "" (a status change, or a value we cannot rank).
    direction = models.CharField(max_length=4, blank=True)
    source = models.CharField(max_length=16, choices=TierSource.choices)
    # The webhook's event (DOWNGRADE, FLAGGED…), or what staff or the command said.
    detail = models.CharField(max_length=200, blank=True)
    changed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(portfolio__isnull=True) ^ Q(sender__isnull=True),
                name="number_change_one_subject",
            ),
        ]
        indexes = [
            # The alert condition reads the changes of the last hours, newest first.
            models.Index(fields=["-changed_at"], name="number_change_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.get_field_display()} {self.old or '—'} → {self.new}"


class PacingState(models.Model):
    """A sender number's pacing bucket in PostgreSQL, for while Redis cannot be reached.

    One row per number (messaging/pacing_failover.py). `mode` says which store paces the
    number for every worker: "redis" normally, "postgres" from the first worker that lost Redis
    until one switches it back. Times are seconds on PostgreSQL's clock (epoch), so every
    machine reads one clock.
    """

    class Mode(models.TextChoices):
        REDIS = "redis"
        POSTGRES = "postgres"

    sender = models.OneToOneField(
        SenderNumber, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.REDIS)
    since = models.DateTimeField(null=True, blank=True)  # when `mode` last changed
    # GCRA: the theoretical arrival time of the next free slot.
    tat = models.FloatField(default=0.0)
    # The adaptive rate (messaging/pacing.py RateState).
    rate = models.FloatField(default=0.0)
    ceiling = models.FloatField(default=0.0)
    throttled_at = models.FloatField(default=0.0)
    changed_at = models.FloatField(default=0.0)
    episode = models.IntegerField(default=0)
    streak = models.IntegerField(default=0)
    # The switch to PostgreSQL: no slot before `grace_until` unless every worker that was
    # serving (`expected_workers`) has joined (`pg_workers`, their ids) and so declared the
    # slots it still held from Redis.
    grace_until = models.FloatField(default=0.0)
    expected_workers = models.IntegerField(default=1)
    pg_workers = models.JSONField(default=list)
    # Last time a worker found Redis unreachable: the switch back waits for a quiet spell.
    redis_failed_at = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return f"pacing of {self.sender_id}: {self.mode}"


class CampaignMinute(models.Model):
    """What happened to a campaign's messages in one minute: rows whose accepted, delivered,
    read or failed time falls in it, and replies attributed to the campaign received in it.

    Moved in the transactions that move the rows (messaging.minutes), so the chart reads one
    row per minute instead of the campaign's queue rows.
    """

    # The unique (campaign, minute) index serves every lookup; no index of its own.
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    minute = models.DateTimeField()
    # Signed: a transaction may take one away (a retry clears `accepted_at`) before it adds.
    accepted = models.IntegerField(default=0)
    delivered = models.IntegerField(default=0)
    read = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    replied = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "minute"], name="campaign_minute_once")
        ]

    def __str__(self) -> str:
        return f"campaign {self.campaign_id} at {self.minute:%Y-%m-%d %H:%M}"

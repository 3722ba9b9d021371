"""Business accounts, sender numbers, templates, contacts, suppression list and campaigns."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from campaigns.suppression import phone_hash


class TierSource(models.TextChoices):
    """Who last set a messaging limit (or a number's quality and status)."""

    DEFAULT = "", "default (never synced)"
    GRAPH = "graph", "Graph API (sync_numbers)"
    WEBHOOK = "webhook", "Meta webhook"
    STAFF = "staff", "staff (admin)"


# The messaging limits Meta gives a portfolio (docs/policy.md, "Messaging limit").
MESSAGING_TIERS = [
    ("TIER_250", "250 recipients / 24 h"),
    ("TIER_2K", "2,000 recipients / 24 h"),
    ("TIER_10K", "10,000 recipients / 24 h"),
    ("TIER_100K", "100,000 recipients / 24 h"),
    ("TIER_UNLIMITED", "unlimited"),
]


class Portfolio(models.Model):
    """A business portfolio (Meta Business Manager). Since October 2025 the messaging limit
    (unique users reached by templates outside a customer-service window, per moving 24 h)
    is the portfolio's, shared by every number of every account in it."""

    business_id = models.CharField("business id", max_length=64, unique=True)
    name = models.CharField(max_length=200, blank=True)
    # TIER_250, TIER_2K, TIER_10K, TIER_100K, TIER_UNLIMITED; from the Graph API
    # (sync_numbers, the business_capability_update webhook) or set by staff. Written only
    # through messaging.numbers, which logs the change and alerts.
    messaging_tier = models.CharField(max_length=32, default="TIER_250")
    tier_updated_at = models.DateTimeField(null=True, blank=True)
    tier_source = models.CharField(
        max_length=16, choices=TierSource.choices, default=TierSource.DEFAULT, blank=True
    )

    def __str__(self) -> str:
        return self.name or self.business_id


class WhatsAppAccount(models.Model):
    """A WhatsApp Business Account (WABA). Its token lives in the environment, never here."""

    waba_id = models.CharField("WABA id", max_length=64, unique=True)
    name = models.CharField(max_length=200, blank=True)
    # Without one, the account is its own portfolio, with its numbers' tier.
    portfolio = models.ForeignKey(
        Portfolio, null=True, blank=True, on_delete=models.SET_NULL, related_name="accounts"
    )
    # Set when the API answered 0/190, 3 or 10 (auth): every campaign of the account is paused,
    # and the scheduled syncs skip the account, until staff replace the token and clear this.
    auth_failed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "WhatsApp business account"

    def __str__(self) -> str:
        return self.name or self.waba_id


class SenderNumber(models.Model):
    class Status(models.TextChoices):
        # The Graph API's phone-number `status` values we act on or show.
        CONNECTED = "CONNECTED"
        FLAGGED = "FLAGGED"
        RESTRICTED = "RESTRICTED"
        BANNED = "BANNED"
        RATE_LIMITED = "RATE_LIMITED"
        PENDING = "PENDING"
        UNVERIFIED = "UNVERIFIED"
        MIGRATED = "MIGRATED"
        DELETED = "DELETED"
        DISCONNECTED = "DISCONNECTED"

    class Quality(models.TextChoices):
        GREEN = "GREEN"
        YELLOW = "YELLOW"
        RED = "RED"
        UNKNOWN = "UNKNOWN"

    account = models.ForeignKey(WhatsAppAccount, on_delete=models.PROTECT, related_name="numbers")
    phone_number_id = models.CharField("Graph phone-number-id", max_length=64, unique=True)
    display_number = models.CharField(max_length=20, help_text="E.164, e.g. +15550783881")
    rate_mps = models.PositiveIntegerField(
        "rate (messages/s)",
        default=80,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
    )
    # The messaging limit Meta reports for the number (sync_numbers); "" = never synced, not
    # enforced. A portfolio's tier, when the account has one, is the one that counts.
    messaging_tier = models.CharField(max_length=32, blank=True, default="")
    quality_rating = models.CharField(
        max_length=16, choices=Quality.choices, default=Quality.UNKNOWN
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CONNECTED)
    # Who set the tier, quality and status last, and when (messaging.numbers writes them).
    tier_source = models.CharField(
        max_length=16, choices=TierSource.choices, default=TierSource.DEFAULT, blank=True
    )
    state_updated_at = models.DateTimeField(null=True, blank=True)
    # What the last sync_numbers read (verified_name, name_status) or why it could not.
    verified_name = models.CharField(max_length=200, blank=True)
    name_status = models.CharField(max_length=32, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    sync_error = models.CharField(max_length=500, blank=True)
    # The rate the engine learned after throttling (AIMD); survives restarts. Null = configured.
    learned_rate = models.FloatField(null=True, blank=True)
    learned_rate_at = models.DateTimeField(null=True, blank=True)
    # Staff phones a campaign's first message may be test-sent to from the wizard (with the
    # TEST_SEND_NUMBERS setting's): E.164, comma-separated.
    test_numbers = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(rate_mps__gte=1, rate_mps__lte=1000), name="sender_rate_1_to_1000"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.display_number} ({self.phone_number_id})"


# The template statuses that send, the one rule of every path that picks or checks a template
# (the wizard, the API, the command, staff replies, test sends, the status webhook and
# sync_templates): APPROVED, and REINSTATED, the status webhook's word for a template that was
# paused or flagged and sends again (docs/whatsapp-api.md, "Template statuses"). Every other
# one (PENDING, PAUSED, DISABLED, REJECTED…) does not.
SENDABLE_TEMPLATE_STATUSES = frozenset({"APPROVED", "REINSTATED"})
# How messages name them: "APPROVED or REINSTATED".
SENDABLE_TEMPLATE_LABEL = " or ".join(sorted(SENDABLE_TEMPLATE_STATUSES))


class MessageTemplateQuerySet(models.QuerySet["MessageTemplate"]):
    def sendable(self) -> MessageTemplateQuerySet:
        return self.filter(status__in=SENDABLE_TEMPLATE_STATUSES)


class MessageTemplate(models.Model):
    """A template as synced from the Graph API; read-only for staff once synced."""

    account = models.ForeignKey(WhatsAppAccount, on_delete=models.PROTECT, related_name="templates")
    graph_id = models.CharField(max_length=64, blank=True)
    name = models.CharField(max_length=512)
    language = models.CharField(max_length=16)
    category = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=32, default="APPROVED")
    parameter_format = models.CharField(max_length=16, default="POSITIONAL")
    components = models.JSONField(default=list)
    synced_at = models.DateTimeField(null=True, blank=True)

    objects = MessageTemplateQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "name", "language"], name="template_unique_per_account"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}:{self.language}"

    @staticmethod
    def status_sends(status: str) -> bool:
        return status in SENDABLE_TEMPLATE_STATUSES

    @property
    def is_sendable(self) -> bool:
        return self.status_sends(self.status)


# An erased contact's phone (and its queue rows' and messages'): "erased:<contact id>".
ERASED_PHONE_PREFIX = "erased:"


class Contact(models.Model):
    # Unique through Meta.constraints: unlike unique=True, that adds no second (LIKE) index.
    phone = models.CharField("phone (E.164)", max_length=20)
    name = models.CharField(max_length=200, blank=True)
    # Free attributes from the CSV's extra columns; template variables are read from here.
    attributes = models.JSONField(default=dict, blank=True)
    # The WhatsApp id last seen for this number, which can differ from the E.164 (Brazil, Mexico).
    wa_id = models.CharField(max_length=32, blank=True)
    opted_out_at = models.DateTimeField(null=True, blank=True)
    # "Not on WhatsApp" (131026): not an opt-out; keeps the number out of new campaigns for
    # POLICY_UNDELIVERABLE_DAYS, after which it is tried again.
    undeliverable_at = models.DateTimeField(null=True, blank=True)
    undeliverable_code = models.IntegerField(null=True, blank=True)
    # Their last message to us: within 24 h the customer-service window is open (free-form
    # replies allowed; templates then cost no messaging-limit budget).
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["phone"], name="contact_phone_unique")]
        # Webhooks match a status's recipient_id to its contact by wa_id. Partial: an
        # imported contact has none yet, and a million '' entries would only slow the import.
        indexes = [models.Index(fields=["wa_id"], name="contact_wa_id", condition=~Q(wa_id=""))]

    def __str__(self) -> str:
        return self.phone


class Suppression(models.Model):
    """A number that no campaign may message. Every campaign import and send respects it."""

    class Source(models.TextChoices):
        STAFF = "staff"
        KEYWORD = "keyword"
        USER_PREFERENCES = "user_preferences"
        API_ERROR = "api_error"
        IMPORT = "import"
        ERASURE = "erasure"

    # NULL once the contact is erased (campaigns.erasure): only the hash is left then.
    phone = models.CharField("phone (E.164)", max_length=20, unique=True, null=True, blank=True)
    # campaigns.suppression.phone_hash(phone): what every suppression check matches on.
    phone_hash = models.CharField(max_length=64, editable=False)
    source = models.CharField(max_length=32, choices=Source.choices, default=Source.STAFF)
    reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["phone_hash"], name="suppression_phone_hash_unique")
        ]

    def __str__(self) -> str:
        return self.phone or f"erased ({self.phone_hash[:12]}…)"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # bulk_create skips this: messaging.policy.optout.opt_out sets the hash itself.
        if self.phone and not self.phone_hash:
            self.phone_hash = phone_hash(self.phone)
        super().save(*args, **kwargs)


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        SCHEDULED = "scheduled"
        RUNNING = "running"
        PAUSED = "paused"
        COMPLETED = "completed"
        CANCELLED = "cancelled"

    # Allowed moves; services refuse any other (e.g. resuming a completed campaign).
    TRANSITIONS: dict[str, set[str]] = {
        Status.DRAFT: {Status.SCHEDULED, Status.RUNNING, Status.CANCELLED},
        Status.SCHEDULED: {Status.RUNNING, Status.PAUSED, Status.CANCELLED, Status.DRAFT},
        Status.RUNNING: {Status.PAUSED, Status.COMPLETED, Status.CANCELLED},
        Status.PAUSED: {Status.RUNNING, Status.SCHEDULED, Status.CANCELLED},
        Status.COMPLETED: set(),
        Status.CANCELLED: set(),
    }

    class Kind(models.TextChoices):
        CAMPAIGN = "campaign"
        # The standing stream of messages sent from code (the API), one per sender number: it
        # runs for good, never completes, and goes before campaigns on its number.
        TRANSACTIONAL = "transactional"

    TRANSACTIONAL_PRIORITY = 100

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.CAMPAIGN)
    sender = models.ForeignKey(SenderNumber, on_delete=models.PROTECT, related_name="campaigns")
    templates = models.ManyToManyField(MessageTemplate, through="CampaignTemplate")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    # Higher goes first on a shared number: transactional traffic before marketing.
    priority = models.SmallIntegerField(default=0)
    start_at = models.DateTimeField(null=True, blank=True)
    # Nothing is sent after this: unsent rows end `expired` and the campaign completes.
    valid_until = models.DateTimeField(null=True, blank=True)
    pause_reason = models.CharField(max_length=255, blank=True)

    # Send policy (messaging/policy). Sending window in each recipient's local time: empty =
    # the default (POLICY_MARKETING_WINDOW, for marketing campaigns); 00:00-00:00 = all day.
    window_start = models.TimeField(null=True, blank=True)
    window_end = models.TimeField(null=True, blank=True)
    # Allowed weekdays, e.g. "mon-fri" or "mon,wed,sat"; empty = every day.
    window_days = models.CharField(max_length=40, blank=True)
    # Marketing messages per contact across campaigns, e.g. "2/7d"; empty = the default
    # (POLICY_MARKETING_CAP), "off" = no cap.
    frequency_cap = models.CharField(max_length=16, blank=True)
    # Canary: this share of the rows first, at most `canary_rate` msg/s, then a verdict.
    canary_percent = models.FloatField(
        default=0, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )
    canary_rate = models.FloatField(null=True, blank=True)
    # "" (none), running, passed, failed (messaging.policy.canary).
    canary_state = models.CharField(max_length=16, blank=True)
    canary_size = models.PositiveIntegerField(default=0)
    canary_done_at = models.DateTimeField(null=True, blank=True)
    # The number's quality when the canary began (a fall is a block signal) and the verdict's
    # figures, for the campaign page.
    canary_report = models.JSONField(default=dict, blank=True)
    # Thresholds (share 0–1) overriding POLICY_* settings for the canary and circuit breaker.
    max_failure_rate = models.FloatField(null=True, blank=True)
    max_opt_out_rate = models.FloatField(null=True, blank=True)

    # Automatic template winner (messaging.winner), off unless a measure is chosen: the first
    # `winner_test_share` % of the rows go out split by weight, then the rest waits until every
    # template has `winner_min_delivered` delivered messages and the two-proportion test names
    # a better one (the rest is re-split to it), or `winner_wait_minutes` pass (sent as split).
    class WinnerMeasure(models.TextChoices):
        OFF = "", "off"
        READ = "read rate", "read rate"
        REPLY = "reply rate", "reply rate"

    winner_measure = models.CharField(
        max_length=16, choices=WinnerMeasure.choices, blank=True, default=""
    )
    winner_test_share = models.PositiveSmallIntegerField(
        default=20, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    winner_min_delivered = models.PositiveIntegerField(default=200)
    winner_wait_minutes = models.PositiveIntegerField(default=240)
    winner_waiting_since = models.DateTimeField(null=True, blank=True)
    winner_decided_at = models.DateTimeField(null=True, blank=True)
    winner_decision = models.CharField(max_length=500, blank=True)

    # Counters kept exact by F() updates in the transaction that records the event, so lists
    # never count the queue. Cumulative: a read message also counts as delivered and sent.
    total = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    delivered = models.PositiveIntegerField(default=0)
    read = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    # Rows that could not go before valid_until (final, never sent).
    expired = models.PositiveIntegerField(default=0)
    # When `campaign.expired` was reported: set once, by the conditional UPDATE of
    # messaging.policy.gate.report_expiry, so concurrent expiries report it once.
    expired_reported_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Import report.
    rejected_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(default=0)
    suppressed_count = models.PositiveIntegerField(default=0)
    # The audience's columns in order (a CSV's header): positional template variables follow
    # it, so a follow-up to this campaign's recipients fills {{1}}, {{2}}… from the same ones.
    audience_columns = models.JSONField(default=list, blank=True)
    # Left out at import: marked "not on WhatsApp" by a recent 131026.
    undeliverable_count = models.PositiveIntegerField(default=0)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Set by the retention purge (messaging.retention) once the queue rows' rendered
    # parameters are dropped: the campaign can no longer be re-sent.
    parameters_purged_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        indexes = [
            # The scheduler's question: which scheduled campaigns are due?
            models.Index(fields=["status", "start_at"], name="campaign_status_start"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["sender"],
                condition=Q(kind="transactional"),
                name="campaign_one_transactional_stream_per_sender",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def can_transition_to(self, status: str) -> bool:
        return status in self.TRANSITIONS[self.status]


class CampaignTemplate(models.Model):
    """A template of a campaign with its share of the contacts (weights, equal by default)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="template_links")
    template = models.ForeignKey(MessageTemplate, on_delete=models.PROTECT)
    weight = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "template"], name="campaign_template_once"),
        ]

    def __str__(self) -> str:
        return f"{self.template} ×{self.weight}"


class ImportRejection(models.Model):
    """A CSV row that did not become a message, kept for the downloadable rejection report."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="rejections")
    row_number = models.PositiveIntegerField()
    value = models.CharField(max_length=255, blank=True)
    reason = models.CharField(max_length=255)

    class Meta:
        indexes = [models.Index(fields=["campaign", "row_number"], name="rejection_campaign_row")]


class ContactList(models.Model):
    """A named, hand-made audience: contacts added by CSV, by selection in admin or by the API."""

    name = models.CharField(max_length=200, unique=True)
    description = models.CharField(max_length=500, blank=True)
    contacts = models.ManyToManyField(Contact, through="ContactListMember", related_name="lists")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class ContactListMember(models.Model):
    contact_list = models.ForeignKey(ContactList, on_delete=models.CASCADE, related_name="members")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["contact_list", "contact"], name="list_member_once")
        ]

    def __str__(self) -> str:
        return f"{self.contact_list}: {self.contact}"


class Segment(models.Model):
    """Contacts chosen by their attributes, evaluated when used (see campaigns/segments.py)."""

    name = models.CharField(max_length=200, unique=True)
    rules = models.TextField(
        help_text="One condition per line, all must hold: 'city = Lisbon', 'tier != gold', "
        "'name contains Ana', 'phone starts with +351', 'vip is set', 'vip is not set', "
        "'last_reply within 30 days', 'no reply within 30 days'."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from campaigns.segments import SegmentError, parse_rules

        try:
            parse_rules(self.rules)
        except SegmentError as exc:
            raise ValidationError({"rules": str(exc)}) from None


class TemplatePrice(models.Model):
    """What Meta charges for one template message to a country, per template category, as
    staff enter it from Meta's rate card. The launch plan's cost estimate reads it; a country
    and category without a row has no estimate (the plan lists it as not priced)."""

    class Category(models.TextChoices):
        MARKETING = "MARKETING"
        UTILITY = "UTILITY"
        AUTHENTICATION = "AUTHENTICATION"

    country = models.CharField(
        max_length=2, help_text="ISO 3166 alpha-2 code of the recipient's number, e.g. PT."
    )
    category = models.CharField(max_length=32, choices=Category.choices)
    price = models.DecimalField(
        max_digits=10,
        decimal_places=5,
        validators=[MinValueValidator(0)],
        help_text="Per message, in the currency below.",
    )
    currency = models.CharField(max_length=3, default="USD")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["country", "category"], name="price_once_per_pair")
        ]
        ordering = ["country", "category"]

    def __str__(self) -> str:
        return f"{self.country} {self.category}: {self.price} {self.currency}"

    def clean(self) -> None:
        import phonenumbers
        from django.core.exceptions import ValidationError

        self.country = (self.country or "").strip().upper()
        self.currency = (self.currency or "").strip().upper()
        if self.country not in phonenumbers.SUPPORTED_REGIONS:
            raise ValidationError({"country": f"“{self.country}” is not a country code."})
        if len(self.currency) != 3 or not self.currency.isalpha():
            raise ValidationError({"currency": "Three letters, e.g. USD or EUR."})

"""API keys and idempotent requests (the way in); the other models of this app follow them."""

from __future__ import annotations

from django.db import models


class ApiKey(models.Model):
    """A client of the HTTP API. Only a hash of the key is stored; the key is shown once."""

    class Scope(models.TextChoices):
        MESSAGES_SEND = "messages:send"
        MESSAGES_READ = "messages:read"
        CAMPAIGNS_READ = "campaigns:read"
        CAMPAIGNS_WRITE = "campaigns:write"

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

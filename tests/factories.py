"""Factories shared by every test package. Phones come from a sequence of valid E.164 numbers."""

from __future__ import annotations

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from campaigns.models import (
    Campaign,
    CampaignTemplate,
    Contact,
    MessageTemplate,
    SenderNumber,
    Suppression,
    WhatsAppAccount,
)
from messaging.models import OutboundMessage


def e164(n: int) -> str:
    """The n-th valid US mobile-looking number (+1 415 555 0000 + n would be fictional)."""
    return f"+1415{2000000 + n:07d}"


class AccountFactory(DjangoModelFactory[WhatsAppAccount]):
    class Meta:
        model = WhatsAppAccount
        django_get_or_create = ("waba_id",)

    waba_id = factory.Sequence(lambda n: f"10{n:010d}")
    name = factory.Sequence(lambda n: f"Account {n}")


class SenderFactory(DjangoModelFactory[SenderNumber]):
    class Meta:
        model = SenderNumber

    account = factory.SubFactory(AccountFactory)
    phone_number_id = factory.Sequence(lambda n: f"20{n:010d}")
    display_number = factory.Sequence(lambda n: f"+1555{n:07d}")
    rate_mps = 80


class TemplateFactory(DjangoModelFactory[MessageTemplate]):
    class Meta:
        model = MessageTemplate

    account = factory.SubFactory(AccountFactory)
    name = factory.Sequence(lambda n: f"promo_{n}")
    language = "en_US"
    # Utility by default: the factories' numbers are US ones, which Meta never sends marketing
    # to (messaging.policy.imports); policy tests ask for MARKETING explicitly.
    category = "UTILITY"
    status = "APPROVED"
    components = factory.LazyFunction(
        lambda: [{"type": "BODY", "text": "Hi {{1}}, your code is {{2}}"}]
    )


class ContactFactory(DjangoModelFactory[Contact]):
    class Meta:
        model = Contact

    phone = factory.Sequence(e164)
    name = factory.Sequence(lambda n: f"Contact {n}")
    attributes = factory.LazyFunction(dict)


class SuppressionFactory(DjangoModelFactory[Suppression]):
    class Meta:
        model = Suppression

    phone = factory.Sequence(e164)


class CampaignFactory(DjangoModelFactory[Campaign]):
    class Meta:
        model = Campaign

    name = factory.Sequence(lambda n: f"Campaign {n}")
    sender = factory.SubFactory(SenderFactory)


class CampaignTemplateFactory(DjangoModelFactory[CampaignTemplate]):
    class Meta:
        model = CampaignTemplate

    campaign = factory.SubFactory(CampaignFactory)
    template = factory.SubFactory(TemplateFactory)


class OutboundMessageFactory(DjangoModelFactory[OutboundMessage]):
    class Meta:
        model = OutboundMessage

    campaign = factory.SubFactory(CampaignFactory)
    contact = factory.SubFactory(ContactFactory)
    template = factory.SubFactory(TemplateFactory)
    sender = factory.LazyAttribute(lambda o: o.campaign.sender)
    phone = factory.LazyAttribute(lambda o: o.contact.phone)
    next_attempt_at = factory.LazyFunction(timezone.now)

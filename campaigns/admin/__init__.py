"""Admin for campaigns, templates, numbers, accounts, contacts and the suppression list.

Staff's main tool. Classes stay declarative: state changes go through messaging.services and
messaging.policy (opt-outs), reads through the selectors.
"""

from __future__ import annotations

from campaigns.admin.accounts import (
    MessageTemplateAdmin,
    PortfolioAdmin,
    SenderNumberAdmin,
    WhatsAppAccountAdmin,
)
from campaigns.admin.audiences import ContactListAdmin, SegmentAdmin
from campaigns.admin.campaign import TRANSITIONS, CampaignAdmin, CampaignTemplateInline
from campaigns.admin.contacts import ContactAdmin, SuppressionAdmin
from campaigns.admin.prices import TemplatePriceAdmin

__all__ = [
    "TRANSITIONS",
    "CampaignAdmin",
    "CampaignTemplateInline",
    "ContactAdmin",
    "ContactListAdmin",
    "MessageTemplateAdmin",
    "PortfolioAdmin",
    "SegmentAdmin",
    "SenderNumberAdmin",
    "SuppressionAdmin",
    "TemplatePriceAdmin",
    "WhatsAppAccountAdmin",
]

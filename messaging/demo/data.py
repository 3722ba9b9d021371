"""Demo data for the quickstart: a business account, a sender number, its templates, a CSV."""

from __future__ import annotations

import csv
import random
from pathlib import Path

from campaigns.models import MessageTemplate, SenderNumber, WhatsAppAccount
from campaigns.template_sync import upsert_templates
from messaging.graph_api import fetch_templates

DEMO_WABA_ID = "100000000000001"
DEMO_PHONE_NUMBER_ID = "106540352242922"
# Served by the simulator (messaging/simulator/templates.py) in two languages, {{1}} and {{2}}.
DEMO_TEMPLATE = "spring_promo"


def ensure_demo_sender(*, rate_mps: int) -> SenderNumber:
    account, _ = WhatsAppAccount.objects.get_or_create(
        waba_id=DEMO_WABA_ID, defaults={"name": "Demo business"}
    )
    account.auth_failed_at = None
    account.save(update_fields=["auth_failed_at"])
    sender, _ = SenderNumber.objects.update_or_create(
        phone_number_id=DEMO_PHONE_NUMBER_ID,
        defaults={
            "account": account,
            "display_number": "+15550783881",
            "rate_mps": rate_mps,
            "learned_rate": None,
        },
    )
    return sender


def sync_demo_templates(*, base_url: str) -> list[MessageTemplate]:
    """Fetch the account's templates from the (simulated) API, as `sync_templates` does, and
    pick the two approved translations of the demo's two-variable promotion."""
    items = fetch_templates(waba_id=DEMO_WABA_ID, base_url=base_url)
    upsert_templates(waba_id=DEMO_WABA_ID, items=items, source="the simulator")
    templates = list(
        MessageTemplate.objects.sendable()
        .filter(account__waba_id=DEMO_WABA_ID, name=DEMO_TEMPLATE)
        .order_by("language")
    )
    if not templates:
        raise ValueError(f"the simulator serves no approved {DEMO_TEMPLATE!r} template")
    return templates


def write_demo_csv(path: Path, *, contacts: int, seed: int = 1) -> Path:
    """A CSV like a customer's: mostly valid Portuguese mobiles (the demo's templates are
    marketing ones, which Meta never delivers to US numbers), a few bad and duplicate rows."""
    rng = random.Random(seed)
    names = ["Ana", "Bruno", "Chloé", "Dev", "Emeka", "Fatima", "Goro", "Hana", "Ivan", "Jo"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["phone", "name", "discount"])
        for i in range(contacts):
            phone = f"+351 9{12 + i // 1_000_000:02d} {i // 1000 % 1000:03d} {i % 1000:03d}"
            writer.writerow([phone, rng.choice(names), f"{rng.choice([10, 20, 30])}%"])
        # What real files carry: a typo'd number and a repeated row.
        writer.writerow(["12345", "Typo", "10%"])
        writer.writerow(["+351 912 000 000", "Ana again", "10%"])
    return path

"""Demo data for the quickstart: a business account, a sender number, templates, a CSV."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from django.utils import timezone

from campaigns.models import MessageTemplate, SenderNumber, WhatsAppAccount

DEMO_WABA_ID = "100000000000001"
DEMO_PHONE_NUMBER_ID = "106540352242922"
TEMPLATES_FILE = Path(__file__).with_name("templates.json")


def ensure_demo_sender(*, rate_mps: int) -> tuple[SenderNumber, list[MessageTemplate]]:
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
    templates = []
    for item in json.loads(TEMPLATES_FILE.read_text())["data"]:
        template, _ = MessageTemplate.objects.update_or_create(
            account=account,
            name=item["name"],
            language=item["language"],
            defaults={
                "graph_id": item["id"],
                "category": item["category"],
                "status": item["status"],
                "parameter_format": item["parameter_format"],
                "components": item["components"],
                "synced_at": timezone.now(),
            },
        )
        templates.append(template)
    return sender, templates


def write_demo_csv(path: Path, *, contacts: int, seed: int = 1) -> Path:
    """A CSV like a customer's: mostly valid US mobiles, a few bad and duplicate rows."""
    rng = random.Random(seed)
    names = ["Ana", "Bruno", "Chloé", "Dev", "Emeka", "Fatima", "Goro", "Hana", "Ivan", "Jo"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["phone", "name", "discount"])
        for i in range(contacts):
            phone = f"(415) {200 + i // 10000:03d}-{i % 10000:04d}"
            writer.writerow([phone, rng.choice(names), f"{rng.choice([10, 20, 30])}%"])
        # What real files carry: a typo'd number and a repeated row.
        writer.writerow(["12345", "Typo", "10%"])
        writer.writerow(["(415) 200-0000", "Ana again", "10%"])
    return path

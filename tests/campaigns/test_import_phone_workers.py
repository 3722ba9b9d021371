"""Big imports normalise their numbers in worker processes: same rows, same reasons."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from campaigns.csv_import import recipient_phone, rows
from campaigns.models import Campaign, ImportRejection
from messaging.campaign_import import create_campaign_from_csv
from messaging.campaign_import.phone_pool import PhonePool, PhoneWorkerError
from messaging.models import OutboundMessage
from tests import factories

NUMBERS = [
    "+14155552671",
    "4155552672",
    "12345",
    "n/a",
    "+999 1234",
    "0044 20 7946 0958",
    "+1 900 555 0199",  # premium rate
    "+1 800 555 0199",  # toll free
    "(415) 555-2673",
    "415-555",
    "4155552674x",
    "+351 912 345 678",
    "912345678",
    "",
]


def _children() -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        found |= {int(p) for p in (task / "children").read_text().split()}
    return found


def test_workers_answer_as_recipient_phone_in_order():
    blocks = [(i, NUMBERS[i:] + NUMBERS[:i]) for i in range(len(NUMBERS))]
    with PhonePool(2) as pool:
        answers = list(pool.normalise(iter(blocks), "US"))
    assert [payload for payload, _ in answers] == list(range(len(NUMBERS)))
    for (_, raws), (_, answer) in zip(blocks, answers, strict=True):
        assert answer == [recipient_phone(raw, "US") for raw in raws]


def test_a_dead_worker_fails_the_import_instead_of_hanging():
    pool = PhonePool(1)
    try:
        pool._workers[0].kill()
        pool._workers[0].wait()
        with pytest.raises(PhoneWorkerError):
            list(pool.normalise(iter([(0, ["+14155552671"] * 10_000)] * 3), "US"))
    finally:
        pool.close()


def _import(sender, templates, path, name):
    return create_campaign_from_csv(
        name=name, csv_file=path, sender=sender, templates=[(t, 1) for t in templates]
    )


def _outcome(result):
    campaign = result.created
    queue = list(
        OutboundMessage.objects.filter(campaign=campaign)
        .order_by("id")
        .values_list("phone", "template_id", "parameters")
    )
    rejections = list(
        ImportRejection.objects.filter(campaign=campaign)
        .order_by("row_number")
        .values_list("row_number", "value", "reason")
    )
    counts = (result.queued, result.rejected, result.duplicates, result.suppressed)
    return queue, rejections, counts, result.rejections, result.preview


@pytest.mark.django_db
def test_an_import_through_the_workers_equals_one_in_process(
    sender, templates, write_csv, settings, monkeypatch
):
    factories.SuppressionFactory(phone="+14155552673")
    lines = ["phone,name,code"]
    lines += [f"{raw},Name {i},C{i}" for i, raw in enumerate(NUMBERS * 30)]
    lines += [f"+1 415 555 {1000 + i},N{i},X{i}" for i in range(300)]
    path = write_csv("\n".join(lines) + "\n")
    monkeypatch.setattr(rows, "PHONE_BLOCK_ROWS", 37)  # many blocks, a short last one

    settings.IMPORT_PHONE_PROCESSES = 0
    alone = _outcome(_import(sender, templates, path, "in process"))
    settings.IMPORT_PHONE_PROCESSES = 2
    settings.IMPORT_PHONE_PROCESSES_FROM_ROWS = 1
    before = _children()
    pooled = _outcome(_import(sender, templates, path, "workers"))

    assert pooled == alone
    assert alone[2][0] > 300 and alone[2][1] > 0 and alone[2][3] == 1
    assert Campaign.objects.count() == 2
    assert _children() <= before  # the workers are gone once the import returns

"""The parse process of a big CSV (campaigns/csv_import/parse_worker.py): the same rows as the
import's threads give, its errors told with their row, and a process killed mid-import
leaving nothing behind."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.utils import timezone

from campaigns.csv_import import CsvImportError
from campaigns.csv_import.parse_worker import ParseConfig, Renderer
from campaigns.csv_import.rendering import TemplatePlan
from campaigns.models import Campaign, Contact, ImportRejection
from messaging.campaign_import import create_campaign_from_csv, producer
from messaging.campaign_import.parse_process import (
    ParseProcess,
    ParseProcessError,
    check_in_process,
)
from messaging.models import OutboundMessage
from tests import factories
from tests.concurrency import waiting_for_locks
from tests.engine.conftest import _wait_until
from tests.factories import e164

WORKER = "campaigns.csv_import.parse_worker"


def _rows(count: int) -> list[str]:
    return [f"{e164(i)},N{i},C{i}" for i in range(count)]


def _awkward_file(write_csv) -> Path:
    """Every kind of row the import treats apart, over several chunks."""
    lines = [
        *_rows(12),
        "12345,Nobody,X",  # invalid
        f"{e164(3)},Again,A9",  # a duplicate of an earlier row
        '+1 (415) 200-0020,"Back\\slash ""q""",Ünïcode ✓',  # escaping in the COPY texts
        '+14162000001,"Quoted, ""name""",C',  # +1 but Canada
        f"{e164(21)},Tab\there,T",  # refused: a tab in a template variable
        f"{e164(30)},Suppressed,S",
        f"{e164(31)},Opted out,O",
        f"{e164(45)},Known,K1",  # an existing contact, attributes merged
        f"{e164(40)},,Nameless",  # refused: no name for {{1}}
        *_rows(60)[50:],
    ]
    return write_csv("phone,name,code\n" + "\n".join(lines) + "\n")


def _outcome(campaign: Campaign) -> dict[str, object]:
    messages = OutboundMessage.objects.filter(campaign=campaign).order_by("id")
    return {
        "counters": Campaign.objects.filter(pk=campaign.pk)
        .values_list(
            "total", "rejected_count", "duplicate_count", "suppressed_count", "undeliverable_count"
        )
        .get(),
        "queue": [
            (m.phone, m.template_id, m.parameters, m.contact.phone, m.status, m.priority)
            for m in messages.select_related("contact")
        ],
        "contacts": sorted(Contact.objects.values_list("phone", "name", "attributes")),
        "rejections": list(
            ImportRejection.objects.filter(campaign=campaign)
            .order_by("row_number")
            .values_list("row_number", "value", "reason")
        ),
    }


@pytest.mark.django_db
def test_the_parse_process_gives_what_the_threads_give(
    sender, templates, write_csv, settings, monkeypatch
):
    monkeypatch.setattr(producer, "CHUNK_ROWS", 7)  # masks and positions across chunks
    factories.SuppressionFactory(phone=e164(30))
    factories.ContactFactory(phone=e164(31), opted_out_at=timezone.now())
    factories.SuppressionFactory(phone=e164(31))
    path = _awkward_file(write_csv)
    outcomes = []
    for from_rows in (0, 1):  # threads, then the parse process
        settings.IMPORT_PARSE_PROCESS_FROM_ROWS = from_rows
        with transaction.atomic():
            factories.ContactFactory(phone=e164(45), name="Before", attributes={"tier": "gold"})
            result = create_campaign_from_csv(
                name="c",
                csv_file=path,
                sender=sender,
                templates=[(templates[0], 2), (templates[1], 1)],
                priority=3,
            )
            outcomes.append(_outcome(result.campaign))
            transaction.set_rollback(True)
    threads, process = outcomes
    assert process == threads
    assert threads["counters"] == (25, 3, 1, 2, 0)
    assert (e164(45), "Known", {"tier": "gold", "code": "K1"}) in threads["contacts"]
    assert ("+14152000020", 'Back\\slash "q"', {"code": "Ünïcode ✓"}) in threads["contacts"]
    assert [r[0] for r in threads["rejections"]] == [14, 18, 22]


@pytest.mark.django_db
def test_a_marketing_campaign_refuses_us_numbers_in_the_parse_process(sender, write_csv, settings):
    settings.IMPORT_PARSE_PROCESS_FROM_ROWS = 1
    settings.POLICY_BLOCK_US_MARKETING = True
    marketing = factories.TemplateFactory(
        account=sender.account,
        category="MARKETING",
        components=[{"type": "BODY", "text": "Hi {{1}}"}],
    )
    path = write_csv(f"phone,name\n{e164(1)},Ann\n+14162000001,Bob\n")
    result = create_campaign_from_csv(
        name="m", csv_file=path, sender=sender, templates=[(marketing, 1)]
    )
    assert (result.queued, result.rejected, result.us_marketing) == (1, 1, 1)
    assert list(OutboundMessage.objects.values_list("phone", flat=True)) == ["+14162000001"]
    assert ImportRejection.objects.get().row_number == 2


def test_a_broken_row_read_by_the_parse_process_is_told_with_its_row(write_csv):
    # The importer checks the whole file before (check_whole_file); a file that changed
    # since, or a row the check let through, is still refused with its row number.
    path = write_csv("phone,name\n" + "\n".join(f"{e164(i)},N{i}" for i in range(9)) + "\nbad\n")
    config = ParseConfig(
        path=str(path),
        region="US",
        needed={},
        phone_rule=None,
        chunk_rows=4,
        renderer=Renderer([TemplatePlan(template_id=1, label="t")], [1], 1, ""),
    )
    read = []
    with ParseProcess(config) as source, pytest.raises(CsvImportError, match="row 11: expected"):
        pending = None
        for numbers in source.numbers():  # as the importer reads them (postgres.py)
            rendered = source.render(bytes(len(numbers.phones)))
            if pending is not None:
                read.append(pending())
            pending = rendered
    # The chunks before the error, in file order (the first ones smaller: chunks.chunked).
    phones = [phone for chunk in read for phone in chunk.phones]
    assert phones == [e164(i) for i in range(len(phones))] and 0 < len(phones) < 9


def test_the_whole_file_check_in_its_own_process_tells_a_broken_row_with_its_number(write_csv):
    good = write_csv("phone,name,code\n" + "\n".join(_rows(50)) + "\n")
    broken = write_csv("phone,name,code\n" + "\n".join(_rows(50)) + "\n+14155550000,a,b,c\n")
    assert check_in_process(str(good)) is None
    with pytest.raises(CsvImportError, match="row 52: expected 3 fields, got 4"):
        check_in_process(str(broken))
    with pytest.raises(CsvImportError, match=r"upload_1\.csv\.gone: no such file"):
        check_in_process(str(good) + ".gone")


@pytest.mark.django_db(transaction=True)
def test_a_broken_last_row_of_a_big_file_fails_its_import_and_leaves_nothing(
    sender, templates, write_csv, settings
):
    # The whole-file check runs beside a parse process's import rather than before it.
    settings.IMPORT_PARSE_PROCESS_FROM_ROWS = 1
    path = write_csv("phone,name,code\n" + "\n".join(_rows(300)) + "\n+14155550000,too,many,x\n")
    with pytest.raises(CsvImportError, match="row 302: expected 3 fields, got 4"):
        create_campaign_from_csv(
            name="b", csv_file=path, sender=sender, templates=[(templates[0], 1)]
        )
    assert not Campaign.objects.exists()
    assert not Contact.objects.exists()
    assert not OutboundMessage.objects.exists()


def _parse_worker_pid() -> int | None:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        # The parse process, not the whole-file check beside it (`--check`).
        if parent == os.getpid() and WORKER.encode() in cmdline and b"--check" not in cmdline:
            return int(entry)
    return None


@pytest.mark.django_db(transaction=True)
def test_a_parse_process_killed_mid_import_leaves_nothing_behind(
    sender, templates, write_csv, settings, monkeypatch
):
    settings.IMPORT_PARSE_PROCESS_FROM_ROWS = 1
    monkeypatch.setattr(producer, "CHUNK_ROWS", 10)
    existing = factories.ContactFactory(phone=e164(5), name="Before", attributes={"k": "v"})
    path = write_csv("phone,name,code\n" + "\n".join(_rows(200)) + "\n")
    locked, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold_contacts() -> None:
        # The import's first look at the contacts (which numbers may be messaged) waits
        # here, so the process is killed while the import is under way.
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {Contact._meta.db_table} IN ACCESS EXCLUSIVE MODE")
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    def run_import() -> None:
        try:
            create_campaign_from_csv(
                name="k", csv_file=path, sender=sender, templates=[(templates[0], 1)]
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_contacts)
    holder.start()
    assert locked.wait(10)
    importer = threading.Thread(target=run_import)
    importer.start()
    try:
        _wait_until(lambda: _parse_worker_pid() is not None and waiting_for_locks(), timeout=30)
        os.kill(_parse_worker_pid() or 0, signal.SIGKILL)
    finally:
        release.set()
        holder.join(30)
        importer.join(60)
    assert len(errors) == 1 and isinstance(errors[0], ParseProcessError)
    assert not Campaign.objects.exists()
    assert not OutboundMessage.objects.exists()
    assert not ImportRejection.objects.exists()
    assert list(Contact.objects.values_list("phone", "name", "attributes")) == [
        (existing.phone, "Before", {"k": "v"})
    ]

"""create_campaign_from_csv and preview_csv: what they write, count and refuse."""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Campaign, CampaignTemplate, Contact, ImportRejection
from messaging import campaign_import
from messaging.campaign_import import (
    batch,
    create_campaign_from_csv,
    postgres,
    preview_csv,
    service,
)
from messaging.models import OutboundMessage, OutboundStatus
from tests import factories

pytestmark = pytest.mark.django_db

CSV = (
    "phone,name,code\n"
    "+14155552671,Ann,A1\n"  # row 2
    "(415) 555-2672,Bob,B2\n"  # row 3
    "12345,Nobody,X\n"  # row 4: invalid
    "+1 415 555 2671,Ann again,A9\n"  # row 5: duplicate of row 2 after normalising
    "4155552673,Cy,C3\n"  # row 6: suppressed below
    "4155552674,Di,D4\n"  # row 7: opted-out contact below
    "4155552675,Ed,E5\n"  # row 8
)


def import_csv(sender, templates, path, **kwargs):
    return create_campaign_from_csv(
        name="Spring", csv_file=path, sender=sender, templates=[(t, 1) for t in templates], **kwargs
    )


@pytest.fixture
def blocked():
    factories.SuppressionFactory(phone="+14155552673")
    # An opted-out contact as the opt-out service leaves it: the suppression is what counts.
    factories.ContactFactory(phone="+14155552674", opted_out_at=timezone.now())
    factories.SuppressionFactory(phone="+14155552674")


def test_duplicates_suppressed_and_invalid_are_counted_and_dropped(
    sender, templates, write_csv, blocked
):
    result = import_csv(sender, templates, write_csv(CSV))
    assert (result.queued, result.rejected, result.duplicates, result.suppressed) == (3, 1, 1, 2)
    campaign = Campaign.objects.get()
    assert (campaign.total, campaign.rejected_count) == (3, 1)
    assert (campaign.duplicate_count, campaign.suppressed_count) == (1, 2)
    assert campaign.status == Campaign.Status.DRAFT
    assert list(OutboundMessage.objects.order_by("id").values_list("phone", flat=True)) == [
        "+14155552671",
        "+14155552672",
        "+14155552675",
    ]
    rejection = ImportRejection.objects.get()
    assert (rejection.campaign, rejection.row_number, rejection.value) == (campaign, 4, "12345")
    assert rejection.reason == "too short for US"


def test_first_row_of_a_duplicate_wins(sender, templates, write_csv):
    import_csv(sender, templates, write_csv(CSV))
    message = OutboundMessage.objects.get(phone="+14155552671")
    assert message.parameters[0]["parameters"][1]["text"] == "A1"
    assert Contact.objects.get(phone="+14155552671").name == "Ann"


def test_queue_rows_are_ready_to_send(sender, templates, write_csv):
    before = timezone.now()
    result = import_csv(sender, templates, write_csv(CSV), priority=5)
    after = timezone.now()
    for message in OutboundMessage.objects.all():
        assert message.campaign == result.campaign
        assert message.status == OutboundStatus.QUEUED
        assert message.sender_id == sender.pk
        assert message.priority == 5
        assert message.phone == message.contact.phone
        assert before <= message.next_attempt_at <= after
    links = CampaignTemplate.objects.filter(campaign=result.campaign).order_by("position")
    assert [(link.template, link.weight) for link in links] == [(t, 1) for t in templates]


def test_existing_contacts_are_updated_and_attributes_merged(sender, write_csv):
    template = factories.TemplateFactory(
        account=sender.account, components=[{"type": "BODY", "text": "Your code: {{1}}"}]
    )
    factories.ContactFactory(
        phone="+14155552671", name="Old", attributes={"tier": "gold", "code": "Z"}
    )
    factories.ContactFactory(phone="+14155552672", name="Keep me", attributes={})
    path = write_csv("phone,code,name\n+14155552671,A1,Ann\n+14155552672,B2,\n+14155552675,E5,Ed\n")
    result = import_csv(sender, [template], path)
    assert result.queued == 3
    ann = Contact.objects.get(phone="+14155552671")
    assert (ann.name, ann.attributes) == ("Ann", {"tier": "gold", "code": "A1"})
    bob = Contact.objects.get(phone="+14155552672")
    assert (bob.name, bob.attributes) == ("Keep me", {"code": "B2"})  # a blank name keeps
    assert Contact.objects.get(phone="+14155552675").name == "Ed"
    assert Contact.objects.count() == 3
    assert OutboundMessage.objects.filter(contact=ann).exists()


def test_text_copy_escapes_keep_names_and_values_as_written(sender, write_csv):
    # The PostgreSQL path writes COPY text itself: its escape character, tabs and line breaks
    # in a name or a refused number, and JSON's own escapes in a value, must come out as they
    # went in.
    template = factories.TemplateFactory(
        account=sender.account, components=[{"type": "BODY", "text": "Code {{1}}"}]
    )
    name = 'Ann \\N \\\\ "Q"\tTab\nLine\r'
    code = 'A\\1 "x" \\t'
    quoted = name.replace('"', '""')
    bad_phone = "n/a\\N\t\\x"
    path = write_csv(
        f'phone,code,name,note\n+14155552671,{code},"{quoted}",\\N\n"{bad_phone}",B,Bo,\n'
    )
    result = import_csv(sender, [template], path)
    assert (result.queued, result.rejected) == (1, 1)
    rejection = ImportRejection.objects.get()
    assert (rejection.value, rejection.reason) == (bad_phone, result.rejections[0].reason)
    assert rejection.reason
    contact = Contact.objects.get(phone="+14155552671")
    assert contact.name == name.strip()
    assert contact.attributes == {"code": code, "note": "\\N"}
    message = OutboundMessage.objects.get()
    assert message.parameters[0]["parameters"][0]["text"] == code


def test_the_gil_switch_interval_is_short_only_while_imports_write(sender, templates, write_csv):
    before = sys.getswitchinterval()
    with postgres._quick_gil_handover():
        with postgres._quick_gil_handover():
            assert sys.getswitchinterval() == postgres.SWITCH_INTERVAL
        # Another import still writing: the interval stays short.
        assert sys.getswitchinterval() == postgres.SWITCH_INTERVAL
    assert sys.getswitchinterval() == before
    import_csv(sender, templates, write_csv(CSV))
    assert sys.getswitchinterval() == before


def test_region_override_reads_national_numbers(sender, templates, write_csv):
    path = write_csv("phone,name,code\n07911 123456,Ann,A1\n")
    result = import_csv(sender, templates, path, default_region="GB")
    assert OutboundMessage.objects.get(campaign=result.campaign).phone == "+447911123456"


def test_start_now_runs_the_campaign(sender, templates, write_csv):
    result = import_csv(sender, templates, write_csv(CSV), start_now=True)
    assert result.campaign.status == Campaign.Status.RUNNING
    assert result.campaign.started_at is not None


def test_start_at_in_the_future_schedules_it(sender, templates, write_csv):
    at = timezone.now() + timedelta(hours=2)
    result = import_csv(sender, templates, write_csv(CSV), start_at=at)
    assert result.campaign.status == Campaign.Status.SCHEDULED
    assert result.campaign.start_at == at


def test_template_of_another_account_is_refused(sender, write_csv):
    foreign = factories.TemplateFactory()
    with pytest.raises(ValueError, match="belongs to another WhatsApp account"):
        import_csv(sender, [foreign], write_csv(CSV))
    assert not Campaign.objects.exists()


def test_template_not_approved_is_refused(sender, write_csv):
    paused = factories.TemplateFactory(account=sender.account, status="PAUSED")
    with pytest.raises(ValueError, match="is PAUSED, only APPROVED"):
        import_csv(sender, [paused], write_csv(CSV))
    assert not Campaign.objects.exists()


def test_file_with_nothing_to_send_is_refused(sender, templates, write_csv):
    path = write_csv("phone,name,code\n123,A,B\nabc,C,D\n")
    with pytest.raises(
        campaign_import.CsvImportError, match="no number left to send to: 2 rejected"
    ):
        import_csv(sender, templates, path)
    assert not Campaign.objects.exists()


def test_preview_counts_and_renders_but_writes_nothing(sender, templates, write_csv, blocked):
    contacts_before = Contact.objects.count()
    result = preview_csv(
        csv_file=write_csv(CSV), sender=sender, templates=[(t, 1) for t in templates], limit=2
    )
    assert result.campaign is None
    assert (result.queued, result.rejected, result.duplicates, result.suppressed) == (3, 1, 1, 2)
    assert [(p.phone, p.template_name) for p in result.preview] == [
        ("+14155552671", templates[0].name),
        ("+14155552672", templates[1].name),
    ]
    assert result.preview[1].components == [
        {
            "type": "body",
            "parameters": [{"type": "text", "text": "Bob"}, {"type": "text", "text": "B2"}],
        }
    ]
    assert [r.row_number for r in result.rejections] == [4]
    assert Contact.objects.count() == contacts_before
    assert not Campaign.objects.exists()
    assert not OutboundMessage.objects.exists()
    assert not ImportRejection.objects.exists()


def test_upload_object_can_be_previewed_then_imported(sender, templates, write_csv):
    """The admin wizard previews an upload, then imports the same file object."""
    with write_csv(CSV).open("rb") as upload:
        preview = preview_csv(csv_file=upload, sender=sender, templates=[(templates[0], 1)])
        result = create_campaign_from_csv(
            name="c", csv_file=upload, sender=sender, templates=[(templates[0], 1)]
        )
    assert preview.queued == result.queued == 5


def test_batch_path_gives_the_same_result_as_the_postgres_path(
    sender, templates, write_csv, blocked, monkeypatch
):
    """The SQLite quickstart path (bulk_create batches), run here on PostgreSQL."""
    path = write_csv(CSV)
    fast = import_csv(sender, templates, path)
    fast_rows = list(
        OutboundMessage.objects.filter(campaign=fast.campaign)
        .order_by("id")
        .values_list("phone", "template_id", "parameters")
    )
    monkeypatch.setattr(service, "_backend", batch._BatchImport)
    monkeypatch.setattr(batch, "_BATCH", 2)
    slow = import_csv(sender, templates, path)
    slow_rows = list(
        OutboundMessage.objects.filter(campaign=slow.campaign)
        .order_by("id")
        .values_list("phone", "template_id", "parameters")
    )
    assert slow_rows == fast_rows
    counts = ("queued", "rejected", "duplicates", "suppressed")
    assert [getattr(slow, c) for c in counts] == [getattr(fast, c) for c in counts]
    assert slow.rejections == fast.rejections
    assert ImportRejection.objects.filter(campaign=slow.campaign).count() == 1
    assert [p.components for p in slow.preview] == [p.components for p in fast.preview]

"""A person's queue rows are found through their contact (`messaging.models.to_numbers`, on the
`outbound_contact` index): every path that queues a row gives it its contact's number, so the
readers of a person's messages (opt-out cancellation, the frequency cap, the inbox, reply
attribution, erasure) find all of them, in every campaign."""

from __future__ import annotations

import pytest
from django.db.models import F

from campaigns.models import Suppression
from messaging.campaign_import import create_campaign_from_csv
from messaging.integrations.transactional import MessageSpec, send_message, stream_for
from messaging.models import OutboundMessage, OutboundStatus, to_numbers
from messaging.policy.optout import opt_out

pytestmark = pytest.mark.django_db

ANN, BOB = "+14152000042", "+14152000043"


def test_every_path_that_queues_a_row_gives_it_its_contacts_number(
    sql_path, sender, template, write_csv
):
    # Numbers as a spreadsheet holds them: the rows and the contacts get the E.164 form.
    csv = "phone,name,code\n(415) 200-0042,Ann,A\n1 415 200 0043,Bob,B\n"
    spring = create_campaign_from_csv(
        name="Spring", csv_file=write_csv(csv), sender=sender, templates=[(template, 1)]
    ).campaign
    autumn = create_campaign_from_csv(
        name="Autumn", csv_file=write_csv(csv), sender=sender, templates=[(template, 1)]
    ).campaign
    stream_for(sender)
    sent = send_message(
        sender=sender,
        message=MessageSpec(
            to="14152000042",
            template=template.name,
            language=template.language,
            variables={"1": "Ann", "2": "X1"},
        ),
    )

    assert OutboundMessage.objects.count() == 5
    assert not OutboundMessage.objects.exclude(phone=F("contact__phone")).exists()
    to_ann = OutboundMessage.objects.filter(to_numbers([ANN]))
    assert sorted(to_ann.values_list("campaign_id", flat=True)) == sorted(
        [spring.pk, autumn.pk, sent.campaign_id]
    )
    assert set(OutboundMessage.objects.filter(to_numbers([ANN, BOB]))) == set(
        OutboundMessage.objects.all()
    )

    assert opt_out(phones=[ANN], source=Suppression.Source.STAFF).cancelled == 3
    assert set(to_ann.values_list("status", flat=True)) == {OutboundStatus.CANCELLED}
    bob = OutboundMessage.objects.filter(to_numbers([BOB]))
    assert set(bob.values_list("status", flat=True)) == {OutboundStatus.QUEUED}


def test_a_number_without_a_contact_has_no_rows(sender, template):
    assert not OutboundMessage.objects.filter(to_numbers(["+14155550000"])).exists()
    assert not OutboundMessage.objects.filter(to_numbers([])).exists()

"""Templates share the contacts interleaved (1,2,3,1,2,3…), never one block after another."""

from __future__ import annotations

from collections import Counter

import pytest

from campaigns.csv_import import interleave_pattern
from messaging.campaign_import import create_campaign_from_csv, producer
from messaging.models import OutboundMessage
from messaging.policy.optout import opt_out
from tests.factories import e164

pytestmark = pytest.mark.django_db


def numbers_csv(write_csv, count: int):
    lines = [f"{e164(i)},N{i},C{i}" for i in range(count)]
    return write_csv("phone,name,code\n" + "\n".join(lines) + "\n")


def test_equal_weights_rotate_through_the_templates():
    assert interleave_pattern([1, 1, 1]) == [0, 1, 2]
    assert interleave_pattern([4, 4]) == [0, 1]  # reduced by the common divisor


def test_weights_are_spread_smoothly():
    assert interleave_pattern([5, 1, 1]) == [0, 0, 1, 0, 2, 0, 0]
    pattern = interleave_pattern([3, 2])
    assert Counter(pattern) == {0: 3, 1: 2}
    assert pattern == [0, 1, 0, 1, 0]


@pytest.mark.parametrize("weights", [[], [1, 0], [2, -1]])
def test_weights_below_one_are_refused(weights):
    with pytest.raises(ValueError, match="at least 1"):
        interleave_pattern(weights)


def test_queue_id_order_interleaves_equal_templates(sender, templates, write_csv):
    create_campaign_from_csv(
        name="c",
        csv_file=numbers_csv(write_csv, 10),
        sender=sender,
        templates=[(t, 1) for t in templates],
    )
    ids = [t.pk for t in templates]
    order = list(OutboundMessage.objects.order_by("id").values_list("template_id", "phone"))
    assert [t for t, _ in order] == (ids * 4)[:10]
    assert [p for _, p in order] == [e164(i) for i in range(10)]  # file order kept


def test_weighted_templates_follow_smooth_round_robin(sender, templates, write_csv):
    a, b, _ = templates
    create_campaign_from_csv(
        name="c", csv_file=numbers_csv(write_csv, 12), sender=sender, templates=[(a, 2), (b, 1)]
    )
    order = list(OutboundMessage.objects.order_by("id").values_list("template_id", flat=True))
    assert order == [a.pk, b.pk, a.pk] * 4


def test_interleave_continues_across_chunks_and_skips_dropped_rows(
    sender, templates, write_csv, monkeypatch
):
    """Several COPY chunks (of 4 rows) behave as one pass: positions continue, and rejected,
    duplicate or suppressed rows take no turn."""
    monkeypatch.setattr(producer, "CHUNK_ROWS", 4)
    lines = [f"{e164(i)},N{i},C{i}" for i in range(14)]
    lines.insert(3, "bad,X,C")
    lines.insert(7, f"{e164(1)},dup,D")
    path = write_csv("phone,name,code\n" + "\n".join(lines) + "\n")
    result = create_campaign_from_csv(
        name="c", csv_file=path, sender=sender, templates=[(t, 1) for t in templates]
    )
    assert (result.queued, result.rejected, result.duplicates) == (14, 1, 1)
    ids = [t.pk for t in templates]
    order = list(OutboundMessage.objects.order_by("id").values_list("template_id", "phone"))
    assert [t for t, _ in order] == (ids * 5)[:14]
    assert [p for _, p in order] == [e164(i) for i in range(14)]


def test_numbers_suppressed_in_later_chunks_take_no_turn(sender, templates, write_csv, monkeypatch):
    """Each chunk's suppressed numbers are found while the chunk before is written (the
    render thread works ahead): the result is still that of one pass, parameters included."""
    monkeypatch.setattr(producer, "CHUNK_ROWS", 3)
    opt_out(phones=[e164(4), e164(8), e164(9)], source="staff")
    path = numbers_csv(write_csv, 13)
    result = create_campaign_from_csv(
        name="c", csv_file=path, sender=sender, templates=[(t, 1) for t in templates]
    )
    kept = [i for i in range(13) if i not in (4, 8, 9)]
    assert (result.queued, result.suppressed) == (10, 3)
    ids = [t.pk for t in templates]
    order = list(
        OutboundMessage.objects.order_by("id").values_list("template_id", "phone", "parameters")
    )
    assert [t for t, _, _ in order] == (ids * 4)[:10]
    assert [p for _, p, _ in order] == [e164(i) for i in kept]
    assert [[v["text"] for v in params[0]["parameters"]] for _, _, params in order] == [
        [f"N{i}", f"C{i}"] for i in kept
    ]

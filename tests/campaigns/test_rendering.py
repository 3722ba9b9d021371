"""Template rendering: which column fills which variable, and the Graph API shape it makes."""

from __future__ import annotations

import pytest

from campaigns.csv_import import CsvImportError, TemplateVariableError, render_components
from messaging.campaign_import import create_campaign_from_csv
from messaging.models import OutboundMessage
from tests import factories

pytestmark = pytest.mark.django_db


def make(account, components, fmt="POSITIONAL"):
    return factories.TemplateFactory(account=account, components=components, parameter_format=fmt)


def text(value, name=None):
    parameter = {"type": "text", "text": value}
    if name:
        parameter["parameter_name"] = name
    return parameter


def test_positional_variables_take_the_extra_columns_in_file_order(account):
    template = make(account, [{"type": "BODY", "text": "Hi {{1}}, code {{2}}"}])
    rendered = render_components(template, {"name": "Ann", "code": "A1", "city": "Rome"})
    assert rendered == [{"type": "body", "parameters": [text("Ann"), text("A1")]}]


def test_var_n_and_bare_number_columns_win_over_file_order(account):
    template = make(account, [{"type": "BODY", "text": "{{1}} / {{2}}"}])
    rendered = render_components(template, {"name": "Ann", "2": "two", "Var1": "one"})
    assert rendered == [{"type": "body", "parameters": [text("one"), text("two")]}]


def test_named_variables_take_their_column_and_carry_parameter_name(account):
    template = make(
        account, [{"type": "BODY", "text": "Hi {{first_name}}, see {{city}}"}], fmt="NAMED"
    )
    rendered = render_components(template, {"City": "Rome", "First Name": "Ann"})
    assert rendered == [
        {
            "type": "body",
            "parameters": [text("Ann", "first_name"), text("Rome", "city")],
        }
    ]


def test_header_text_url_button_and_copy_code_are_rendered(account):
    template = make(
        account,
        [
            {"type": "HEADER", "format": "TEXT", "text": "Offer for {{1}}"},
            {"type": "BODY", "text": "Hello {{1}}"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "Stop"},
                    {"type": "URL", "text": "Open", "url": "https://shop.example/o/{{1}}"},
                    {"type": "COPY_CODE", "example": "SAVE10"},
                ],
            },
        ],
    )
    rendered = render_components(
        template,
        {"name": "Ann", "header_1": "VIPs", "button_1": "abc123", "button_2": "SAVE10"},
    )
    assert rendered == [
        {"type": "header", "parameters": [text("VIPs")]},
        {"type": "body", "parameters": [text("Ann")]},  # header_/button_ columns are not extras
        {"type": "button", "sub_type": "url", "index": "1", "parameters": [text("abc123")]},
        {
            "type": "button",
            "sub_type": "copy_code",
            "index": "2",
            "parameters": [{"type": "coupon_code", "coupon_code": "SAVE10"}],
        },
    ]


def test_media_header_takes_a_link_or_a_media_id(account):
    template = make(account, [{"type": "HEADER", "format": "IMAGE"}])
    assert render_components(template, {"header_media": "https://cdn.example/a.jpg"}) == [
        {
            "type": "header",
            "parameters": [{"type": "image", "image": {"link": "https://cdn.example/a.jpg"}}],
        }
    ]
    assert render_components(template, {"header_image": "1037543291543636"}) == [
        {"type": "header", "parameters": [{"type": "image", "image": {"id": "1037543291543636"}}]}
    ]


def test_template_without_variables_renders_nothing(account):
    template = make(account, [{"type": "BODY", "text": "Hello!"}])
    assert render_components(template, {"name": "Ann"}) == []


def test_a_variable_without_any_column_is_a_file_error(account):
    template = make(account, [{"type": "BODY", "text": "{{1}} {{2}} {{3}}"}])
    with pytest.raises(CsvImportError, match=r"body \{\{3\}\}.*add one named 'var3'"):
        render_components(template, {"name": "Ann", "code": "A"})


def test_named_variable_without_its_column_is_a_file_error(account):
    template = make(account, [{"type": "BODY", "text": "{{first_name}}"}], fmt="NAMED")
    with pytest.raises(CsvImportError, match="add a column named 'first_name'"):
        render_components(template, {"name": "Ann"})


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("two\nlines", "line break"),
        ("a     b", r"5\+ spaces"),
    ],
)
def test_a_value_whatsapp_would_refuse_is_a_row_error(account, value, problem):
    template = make(account, [{"type": "BODY", "text": "Hi {{1}}"}])
    with pytest.raises(TemplateVariableError, match=problem):
        render_components(template, {"name": value})


def test_rows_missing_a_variable_are_rejected_with_the_reason(sender, write_csv):
    template = make(sender.account, [{"type": "BODY", "text": "Hi {{1}}, code {{2}}"}])
    path = write_csv("phone,name,code\n+14155552671,Ann,A1\n+14155552672,Bob,\n")
    result = create_campaign_from_csv(
        name="c", csv_file=path, sender=sender, templates=[(template, 1)]
    )
    assert result.queued == 1
    assert [(r.row_number, r.value) for r in result.rejections] == [(3, "+14155552672")]
    assert "column 'code' is empty" in result.rejections[0].reason
    assert "{{2}}" in result.rejections[0].reason


def test_queued_parameters_match_render_components_for_every_template(sender, write_csv):
    """The importer renders in SQL on PostgreSQL; it must equal the Python rendering."""
    templates = [
        make(sender.account, [{"type": "BODY", "text": "{{1}} {{2}}"}]),
        make(
            sender.account,
            [
                {"type": "HEADER", "format": "VIDEO"},
                {"type": "BODY", "text": "{{name}} from {{city}}"},
                {"type": "BUTTONS", "buttons": [{"type": "URL", "url": "https://x.example/{{1}}"}]},
            ],
            fmt="NAMED",
        ),
        make(
            sender.account,
            [{"type": "HEADER", "format": "DOCUMENT"}, {"type": "BODY", "text": "Hi"}],
        ),
    ]
    path = write_csv(
        "phone,name,city,header_media,button_0\n"
        "+14155552671,Ann,Rome,https://cdn.example/v.mp4,a1\n"
        "+14155552672,Bob,Oslo,4490709327384033,b2\n"
        '+14155552673,Cy "Q",Köln,HTTP://cdn.example/d.pdf,c3\n'
        "+14155552674,Di,Pune,555,d4\n"
    )
    result = create_campaign_from_csv(
        name="c", csv_file=path, sender=sender, templates=[(t, 1) for t in templates]
    )
    assert result.queued == 4
    columns = ["name", "city", "header_media", "button_0"]
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    by_template = {t.pk: t for t in templates}
    for message, row in zip(OutboundMessage.objects.order_by("id"), rows, strict=True):
        expected = render_components(
            by_template[message.template_id], dict(zip(columns, row[1:], strict=True))
        )
        assert message.parameters == expected
    assert [p.components for p in result.preview] == [
        m.parameters for m in OutboundMessage.objects.order_by("id")
    ]

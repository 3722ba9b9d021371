"""What the importer says about files it cannot read, and the formats it does accept."""

from __future__ import annotations

import io

import pytest

from campaigns.csv_import import CsvFile, CsvImportError, parse_rows
from campaigns.models import Campaign, Contact, ImportRejection
from messaging.campaign_import import create_campaign_from_csv
from messaging.models import OutboundMessage

pytestmark = pytest.mark.django_db


def rows_of(content: bytes, region: str = "US") -> list:
    with CsvFile(io.BytesIO(content)) as source:
        return list(parse_rows(source, region=region))


def import_error(sender, templates, path) -> str:
    with pytest.raises(CsvImportError) as caught:
        create_campaign_from_csv(
            name="bad file", csv_file=path, sender=sender, templates=[(templates[0], 1)]
        )
    assert not Campaign.objects.exists()
    assert not Contact.objects.exists()
    assert not OutboundMessage.objects.exists()
    assert not ImportRejection.objects.exists()
    return str(caught.value)


def test_utf8_bom_is_ignored_in_the_header():
    rows = rows_of("\ufeffphone,name\n+14155552671,Zoë\n".encode())
    assert [(r.phone, r.name) for r in rows] == [("+14155552671", "Zoë")]


def test_semicolon_delimiter_is_detected():
    rows = rows_of(b"name;Phone;code\nAnn;+14155552671;A,1\n")
    assert rows[0].phone == "+14155552671"
    assert rows[0].values == {"name": "Ann", "code": "A,1"}


def test_excel_sep_line_sets_the_delimiter():
    rows = rows_of(b"sep=;\nname;phone\nAnn, Jr;+14155552671\n")
    assert [(r.row_number, r.phone, r.name) for r in rows] == [(3, "+14155552671", "Ann, Jr")]


def test_blank_lines_before_the_header_are_skipped():
    rows = rows_of(b"\n\nphone;name\n+14155552671;Ann\n")
    assert [(r.row_number, r.phone) for r in rows] == [(4, "+14155552671")]


def test_tab_delimiter_is_detected():
    rows = rows_of(b"msisdn\tname\n14155552671\tAnn\n")
    assert rows[0].phone == "+14155552671"


@pytest.mark.parametrize("header", ["Phone Number", "MSISDN", "mobile", "wa_id", "PHONE"])
def test_phone_column_aliases_are_accepted(header):
    rows = rows_of(f"{header},name\n+14155552671,Ann\n".encode())
    assert rows[0].phone == "+14155552671"


def test_quoted_fields_with_newlines_count_as_one_row():
    rows = rows_of(b'phone,note\n+14155552671,"two\nlines"\nnope,x\n')
    assert rows[0].values["note"] == "two\nlines"
    assert rows[1].row_number == 3  # the header is row 1, as in a spreadsheet


def test_blank_lines_are_skipped_and_rows_keep_their_numbers():
    rows = rows_of(b"phone,name\n\n+14155552671,Ann\n,\n+14155552672,Bob\n")
    assert [(r.row_number, r.phone) for r in rows] == [(3, "+14155552671"), (5, "+14155552672")]


def test_file_without_phone_column_names_the_columns_it_found(sender, templates, write_csv):
    message = import_error(sender, templates, write_csv("number,name\n+14155552671,Ann\n"))
    assert "no phone column" in message
    assert "'number', 'name'" in message


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf", b"\n\n  \n"])
def test_empty_file_is_refused(sender, templates, write_csv, content):
    assert "the file is empty" in import_error(sender, templates, write_csv(content))


def test_header_without_rows_is_refused(sender, templates, write_csv):
    message = import_error(sender, templates, write_csv("\ufeffphone,name,code\r\n"))
    assert message == "the file has no data rows, only the header"


def test_binary_file_is_refused(sender, templates, write_csv):
    content = bytes(range(256)) * 8
    assert "NUL bytes" in import_error(sender, templates, write_csv(content))


def test_excel_workbook_is_refused_with_a_hint(sender, templates, write_csv):
    content = b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 100
    assert "save it as 'CSV UTF-8'" in import_error(sender, templates, write_csv(content))


def test_utf16_file_is_refused(sender, templates, write_csv):
    path = write_csv("phone,name\n+14155552671,Ann\n", encoding="utf-16")
    assert "UTF-16" in import_error(sender, templates, path)


def test_latin1_file_is_refused_as_not_utf8(sender, templates, write_csv):
    path = write_csv("phone,name,code\n+14155552671,Zoë,A\n", encoding="latin-1")
    assert "not UTF-8" in import_error(sender, templates, path)


def test_undecodable_bytes_past_the_first_block_name_the_row(sender, templates, write_csv):
    good = "".join(f"+1415{2000000 + i},N{i},C{i}\n" for i in range(5000))
    path = write_csv(b"phone,name,code\n" + good.encode() + b"+14155552671,Zo\xe9,C\n")
    message = import_error(sender, templates, path)
    assert "not UTF-8" in message
    assert message.startswith("row 5002: ")


def test_nul_byte_late_in_the_file_is_refused(sender, templates, write_csv):
    good = "".join(f"+1415{2000000 + i},N{i},C{i}\n" for i in range(5000))
    path = write_csv(b"phone,name,code\n" + good.encode() + b"+14155552671,A\x00,C\n")
    message = import_error(sender, templates, path)
    assert message.startswith("row 5002: ")
    assert "NUL bytes" in message


def test_broken_row_is_refused_with_its_row_number(sender, templates, write_csv):
    path = write_csv(
        "phone,name,code\n+14155552671,Ann,A\n+14155552672,Bob,B,extra,more\n+14155552673,C,C\n"
    )
    assert import_error(sender, templates, path) == "row 3: expected 3 fields, got 5"


def test_unclosed_quote_is_refused_with_its_row_number(sender, templates, write_csv):
    path = write_csv('phone,name,code\n+14155552671,Ann,A\n+14155552672,"Bob,B\n')
    message = import_error(sender, templates, path)
    assert message.startswith("row 3:")


def test_duplicate_header_is_refused(sender, templates, write_csv):
    path = write_csv("phone,name,Name\n+14155552671,Ann,A\n")
    assert "column 'name' appears twice" in import_error(sender, templates, path)


def test_missing_file_is_refused(sender, templates, tmp_path):
    assert "no such file" in import_error(sender, templates, tmp_path / "nope.csv")

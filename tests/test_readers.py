"""Contact file readers (catalogue section G): real exports from ../shared/testdata and
synthetic files for each fault. Pure: no app, no database, nothing is ever sent.

Expectations for real files were written after reading each file; the addresses in them are
only compared as strings.
"""

from __future__ import annotations

import codecs
import csv
import io
import tracemalloc
import zipfile
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest
from conftest import SHARED_TESTDATA, shared_testdata
from openpyxl import Workbook

from preference_center import readers
from preference_center.readers import (
    FIELDS,
    FileInfo,
    ReadError,
    Row,
    guess_mapping,
    read_rows,
    sniff,
    split_addresses,
    split_full_name,
)

# --- helpers ------------------------------------------------------------------------------


def data_of(relative: str) -> bytes:
    return shared_testdata(*relative.split("/")).read_bytes()


def contacts(data: bytes, **options: object) -> list[tuple[int, str, str, str, str]]:
    """(line, email, first name, last name, company) of every row, failing on row errors."""
    rows = list(read_rows(data, **options))  # type: ignore[arg-type]
    assert [row for row in rows if row.error] == []
    return [(row.line, row.email, row.first_name, row.last_name, row.company) for row in rows]


def read_error(data: bytes, **options: object) -> ReadError:
    with pytest.raises(ReadError) as caught:
        sniff(data, "upload.csv", **options)  # type: ignore[arg-type]
    assert caught.value.code in readers.ERROR_CODES
    return caught.value


def xlsx_bytes(workbook: Workbook) -> bytes:
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# --- every real file ----------------------------------------------------------------------

# Files that are not contact lists at all: sniff refuses them, and must say so clearly.
NOT_CONTACT_FILES = {
    "contact-csv/header-rows/header_rows.json": "JSON catalogue of header rows (test metadata)",
    "contact-csv/thunderbird/thunderbird__addressbook_expected.json": "JSON of expected parse results",
    "vcard/ez-vcard__jcard-example.json": "jCard (RFC 7095, JSON): a format we do not read",
    "vcard/ez-vcard__rfc6351-example.xml": "xCard (RFC 6351, XML): a format we do not read",
}

# Delimited text without a single address or address header: CSV parser fixtures (Horde,
# PhpSpreadsheet) and a licence. They sniff fine, and read_rows refuses them with
# "no_email_column" until a column is chosen; with one chosen they read to the end.
NO_ADDRESS_FILES = {
    **{
        f"contact-csv/csv-edge-cases/horde-data__{name}.csv": "Horde CSV parser fixture, no contact data"
        for name in (
            "getcsv_001 getcsv_002 getcsv_003 getcsv_004 getcsv_005 getcsv_bug_3839 "
            "getcsv_bug_4025 getcsv_columns1 getcsv_columns2 getcsv_multiline1 "
            "getcsv_notrailing_crlf getcsv_notrailing_lf getcsv_quote1 getcsv_quote2 getcsv_quote3 "
            "getcsv_quote4 getcsv_quote5 getcsv_quote6 getcsv_quote7 getcsv_simple_cr "
            "getcsv_simple_crlf getcsv_simple_lf quotes1 quotes2 simple_dos simple_unix"
        ).split()
    },
    **{
        f"contact-csv/csv-edge-cases/phpspreadsheet__{name}.csv": "PhpSpreadsheet CSV reader fixture, no contact data"
        for name in (
            "NumberFormatTest.de backslash encoding.iso88591 encoding.utf16le encoding.utf8bom "
            "escape line_break_in_enclosure line_break_in_enclosure_with_escaped_quotes "
            "linend.mac linend.win premiere.utf16le premiere.utf16lebom premiere.utf8bom "
            "premiere.win1252 semicolon_separated sep"
        ).split()
    },
    "vcard/ez-vcard__vcard-samples-license.txt": "licence text of the ez-vcard samples",
}


def real_files() -> list[str]:
    if not SHARED_TESTDATA.exists():
        return ["contact-csv"]  # the test skips with the reason from shared_testdata()
    found = [
        path.relative_to(SHARED_TESTDATA).as_posix()
        for folder in ("contact-csv", "vcard")
        for path in sorted((SHARED_TESTDATA / folder).rglob("*"))
        if path.is_file()
    ]
    return found


@pytest.mark.parametrize("relative", real_files())
def test_every_contact_file_is_read_without_exception(relative: str) -> None:
    path = shared_testdata(*relative.split("/"))
    if path.is_dir():
        pytest.skip("shared test data not found")
    with path.open("rb") as stream:
        if relative in NOT_CONTACT_FILES:
            with pytest.raises(ReadError) as caught:
                sniff(stream, path.name)
            assert caught.value.code == readers.UNSUPPORTED
            return
        info = sniff(stream, path.name)
        if relative in NO_ADDRESS_FILES:
            assert info.mapping["email"] is None
            with pytest.raises(ReadError) as caught:
                read_rows(stream, filename=path.name)
            assert caught.value.code == readers.NO_EMAIL_COLUMN
            rows = list(read_rows(stream, {"email": 0}, filename=path.name))
        else:
            assert info.mapping["email"] is not None, "an address column should be found"
            rows = list(read_rows(stream, filename=path.name))
        assert not stream.closed  # the caller's stream is never closed behind its back
    assert all(isinstance(row, Row) and row.line >= 1 for row in rows)
    assert [row for row in rows if row.error] == []  # the real files have no broken record


def test_explicit_lists_name_real_files() -> None:
    """The exception lists must not rot: every entry is a file that exists."""
    for relative in [*NOT_CONTACT_FILES, *NO_ADDRESS_FILES]:
        assert shared_testdata(*relative.split("/")).is_file(), relative


# --- real exports: exact expectations -----------------------------------------------------


def test_outlook_export() -> None:
    data = data_of("contact-csv/app-exports/horde-data__examples_Outlook.csv")
    info = sniff(data, "Outlook.csv")
    assert (info.format, info.delimiter, info.header_line) == ("csv", ",", 1)
    assert info.headers[57] == "E-mail Address" and info.mapping["email"] == 57
    assert info.mapping["language"] == 73  # Outlook has a "Language" column
    # The record spans lines 2-4 (a multi-line memo); it starts on line 2.
    assert contacts(data) == [(2, "firman@php.net", "Firman", "Wandayandi", "Foo")]


def test_gmail_2007_export_has_one_name_column() -> None:
    data = data_of("contact-csv/app-exports/horde-data__examples_Gmail.csv")
    info = sniff(data)
    # "E-mail" wins over "Section 1 - Email"; "Name" is split into first and last name.
    assert info.mapping["email"] == 1 and info.mapping["full_name"] == 0
    assert contacts(data) == [
        (2, "john@example.com", "John", "Doe", "Example, Corp."),
        (3, "jeniffer@example.com", "Jeniffer", "Doe", "Example, Corp."),
    ]


def test_thunderbird_app_export_without_header() -> None:
    data = data_of("contact-csv/app-exports/horde-data__examples_Thunderbird.csv")
    info = sniff(data)
    assert info.header_line is None and info.headers == ()
    assert info.mapping["email"] == 4  # found by its values
    assert contacts(data) == [(1, "firman@php.net", "", "", "")]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Yahoo", [(2, "firman@php.net", "Firman", "Wandayandi", "Foo")]),
        ("WAB", [(2, "firman@php.net", "Firman", "Wandayandi", "Foo")]),
        ("WAB-selectable", [(2, "foo@bar.com", "foo", "bar", "foo")]),
        # KMail's sample puts the whole name in "Given Name" and leaves "Family Name" empty.
        ("KMail", [(2, "firman@php.net", "Firman Wandayandi", "", "Foo")]),
        # Palm has no header: the address column is found by its values, names are unknown.
        ("Palm", [(1, "Gordon!@usa.com", "", "", ""), (2, "Gordon2@usa.com", "", "", "")]),
    ],
)
def test_horde_app_exports(name: str, expected: list[tuple[int, str, str, str, str]]) -> None:
    assert contacts(data_of(f"contact-csv/app-exports/horde-data__examples_{name}.csv")) == expected


def test_eudora_nickname_file_is_read_as_one_column() -> None:
    """Not CSV at all: one column, the whole line as "address", which validation refuses."""
    data = data_of("contact-csv/app-exports/horde-data__examples_Eudora.txt")
    rows = list(read_rows(data))
    assert [row.line for row in rows] == [1, 2]
    assert rows[0].email == "alias firman firman@php.net"


@pytest.mark.parametrize(
    ("name", "expected_with_address"),
    [
        (
            "kawsay__linkedin_Connections.csv",
            [(6, "aesop@example.com", "Æsop", "Fontaine", "Globex")],
        ),
        (
            "bdrolet-people__linkedin_Connections.csv",
            [(5, "Alice@Example.com", "Alice", "Example", "Example Health")],
        ),
        (
            "lexnetwork__linkedin_Connections.csv",
            [(5, "ana.silva@example.com", "Ana", "Silva", "Anthropic")],
        ),
    ],
)
def test_linkedin_connections_preamble_is_skipped(
    name: str, expected_with_address: list[tuple[int, str, str, str, str]]
) -> None:
    data = data_of(f"contact-csv/linkedin/{name}")
    info = sniff(data, name)
    # "Notes:", the quoted notice and a blank line come before the header on line 4.
    assert info.header_line == 4
    assert info.headers[:4] == ("First Name", "Last Name", "URL", "Email Address")
    rows = contacts(data)
    assert [row for row in rows if row[1]] == expected_with_address
    # Connections without a shared address are still rows, for the import report.
    assert all(row[0] > 4 for row in rows)


def test_linkedin_names_with_accents_and_quoted_commas() -> None:
    rows = contacts(data_of("contact-csv/linkedin/kawsay__linkedin_Connections.csv"))
    assert rows[0] == (5, "", "José", "García", "Acme, Inc.")
    rows = contacts(data_of("contact-csv/linkedin/bdrolet-people__linkedin_Connections.csv"))
    assert (10, "", "Élodie", "Accent", "Accent SA") in rows


def test_eventbrite_attendee_report() -> None:
    data = data_of("contact-csv/eventbrite/eb2ez__eventbrite_attendee_report_test_input_file_1.csv")
    assert contacts(data) == [
        (2, "jdoe1@test1mail.com", "John", "Doe", "Company1Name"),
        (3, "jdoe2@test2mail.com", "Jane", "Doe", "Company2Name"),
        (4, "jbloggs@test3mail.com", "Joe", "Bloggs", "Company3Name"),
    ]


def test_mailchimp_exports_strip_stray_spaces() -> None:
    subscribed = contacts(data_of("contact-csv/mailchimp/ghost-migrate__mailchimp_subscribed.csv"))
    assert [row[1] for row in subscribed] == [f"s{n}@example.com" for n in range(1, 6)]
    assert subscribed[-1] == (6, "s5@example.com", "Dolor", "Simet", "Lorem Co.")
    cleaned = contacts(data_of("contact-csv/mailchimp/ghost-migrate__mailchimp_cleaned.csv"))
    assert cleaned[1] == (3, "c2@example.com", "Simet", "Lut", "")
    unsubscribed = contacts(
        data_of("contact-csv/mailchimp/ghost-migrate__mailchimp_unsubscribed.csv")
    )
    assert unsubscribed[2] == (4, "u3@example.com", "Lorem", "Ipsum", "Example foundation")


def test_badge_lead_files() -> None:
    ez_badge = contacts(
        data_of("contact-csv/badge-lead/eb2ez__ez-badge_upload_test_output_file_1.csv")
    )
    assert ez_badge == [
        (2, "jdoe1@test1mail.com", "John", "Doe", "Company1Name"),
        (3, "jdoe2@test2mail.com", "Jane", "Doe", "Company2Name"),
        (4, "jbloggs@test3mail.com", "Joe", "Bloggs", "Company3Name"),
    ]
    # Duplicates are the service's business (catalogue G8): every scan is a row here.
    scans = contacts(data_of("contact-csv/badge-lead/trade-show-intelligence__duplicate-scans.csv"))
    assert len(scans) == 10
    assert [row[0] for row in scans if row[1] == "alex.turner@techcorp.com"] == [2, 4, 11]
    odd = data_of("contact-csv/badge-lead/trade-show-intelligence__non-standard-headers.csv")
    info = sniff(odd)
    assert info.headers[:4] == ("fname", "lname", "email_address", "organization")
    assert {
        name: info.mapping[name] for name in ("email", "first_name", "last_name", "company")
    } == {
        "email": 2,
        "first_name": 0,
        "last_name": 1,
        "company": 3,
    }
    odd_rows = contacts(odd)
    # "ai solutions.ai" has a space: read as is, validation refuses it later.
    assert odd_rows[3] == (5, "alice.cook@ai solutions.ai", "Alice", "Cook", "AISolutions Ltd")
    fifty = contacts(
        data_of("contact-csv/badge-lead/trade-show-intelligence__sample-badge-scans-50.csv")
    )
    assert len(fifty) == 50
    assert fifty[0] == (2, "john.smith@acmecorp.com", "John", "Smith", "Acme Corporation")


def test_google_contacts_export() -> None:
    data = data_of("contact-csv/google/lexnetwork__google-contacts.csv")
    info = sniff(data)
    assert info.mapping["email"] == info.headers.index("E-mail 1 - Value")
    assert info.mapping["company"] == info.headers.index("Organization Name")
    assert contacts(data) == [
        (2, "jane.doe@acme.example", "Jane", "Doe", "Acme Corp"),
        (3, "bob.smith@globex.example", "Bob", "Smith", "Globex"),
        # Quoted fields with "", a comma and a two-line note.
        (4, "chloe@vandamme.example", "Chloé", "Van Damme, Jr.", "Widgets, Inc."),
    ]


def test_thunderbird_csv_fixtures() -> None:
    semicolon = data_of("contact-csv/thunderbird/thunderbird__csv_semicolon.csv")
    assert sniff(semicolon).delimiter == ";"
    assert contacts(semicolon) == [
        (2, "john@doe.invalid", "John", "Doe", ""),
        (3, "jane@doe.invalid", "Jane", "Doe", ""),
    ]
    utf16 = data_of("contact-csv/thunderbird/thunderbird__utf16_addressbook.csv")
    assert (sniff(utf16).encoding, sniff(utf16).encoding_source) == ("utf-16", "bom")
    assert contacts(utf16) == [(2, "johndoe@host.invalid", "John", "Doe", "")]
    tab = data_of("contact-csv/thunderbird/thunderbird__export_tab.txt")
    assert sniff(tab).delimiter == "\t"
    # Quoted fields with a TAB, a CR and a newline make record 3 span lines 3-4.
    assert contacts(tab) == [
        (2, "contact1@invalid", "contact", "one", ""),
        (3, "contact2@invalid", "contact", "two", ""),
    ]
    no_header = data_of("contact-csv/thunderbird/thunderbird__csv_no_header.csv")
    assert sniff(no_header).header_line is None
    assert [row[:2] for row in contacts(no_header)] == [
        (1, "john@doe.invalid"),
        (2, "jane@doe.invalid"),
    ]


def test_keila_excel_csv_utf8_with_bom_and_semicolons() -> None:
    data = data_of("contact-csv/newsletter-tool-fixtures/keila__import_excel.csv")
    info = sniff(data)
    assert (info.encoding, info.delimiter, info.headers) == (
        "utf-8-sig",
        ";",
        ("Email", "First name", "Last name"),
    )
    rows = contacts(data)
    assert len(rows) == 201
    assert rows[:2] == [
        (2, "foo-1@example.com", "Joël", "Müller-Schultheiß", ""),
        (3, "foo-2@example.com", "Eliška", "Þorláksson", ""),
    ]


# --- PhpSpreadsheet encoding and delimiter fixtures ---------------------------------------

PREMIERE = (("première", "second", "troisième"), ("Quatrième", "cinquième", "sixième"))


@pytest.mark.parametrize(
    ("name", "encoding", "source"),
    [
        ("premiere.utf16lebom", "utf-16", "bom"),
        ("premiere.utf8bom", "utf-8-sig", "bom"),
        ("premiere.win1252", "cp1252", "detected"),  # charset-normalizer alone says cp857
    ],
)
def test_phpspreadsheet_premiere_encodings(name: str, encoding: str, source: str) -> None:
    info = sniff(data_of(f"contact-csv/csv-edge-cases/phpspreadsheet__{name}.csv"))
    assert (info.encoding, info.encoding_source, info.delimiter) == (encoding, source, ",")
    assert (info.headers, *info.sample) == PREMIERE


def test_phpspreadsheet_utf16le_without_bom() -> None:
    info = sniff(data_of("contact-csv/csv-edge-cases/phpspreadsheet__premiere.utf16le.csv"))
    assert info.encoding == "utf-16-le"
    assert (info.headers, *info.sample[:1]) == PREMIERE
    # Its third line holds a surrogate pair and the noncharacters U+FFFE and U+FFFF.
    assert info.sample[1] == ("\U00010400", "\ufffe", "\uffff")
    small = sniff(data_of("contact-csv/csv-edge-cases/phpspreadsheet__encoding.utf16le.csv"))
    assert (small.encoding, small.headers, small.sample) == ("utf-16-le", ("Å", "1"), (("2", "3"),))


def test_phpspreadsheet_utf8bom_and_latin1() -> None:
    bom = sniff(data_of("contact-csv/csv-edge-cases/phpspreadsheet__encoding.utf8bom.csv"))
    assert (bom.encoding, bom.headers) == ("utf-8-sig", ("Å", "1"))  # no "\ufeffÅ"
    latin1 = sniff(data_of("contact-csv/csv-edge-cases/phpspreadsheet__encoding.iso88591.csv"))
    assert (latin1.encoding, latin1.headers) == ("cp1252", ("Å", "1"))  # not cp932's "ﾅ"


def test_phpspreadsheet_semicolon_and_sep_line() -> None:
    semicolon = sniff(data_of("contact-csv/csv-edge-cases/phpspreadsheet__semicolon_separated.csv"))
    assert semicolon.delimiter == ";"
    assert semicolon.sample == (
        ("Cell A2", "Number with comma", "25,5"),
        ("Two colons and a comma", "B|3", ":,:"),
    )
    sep = sniff(data_of("contact-csv/csv-edge-cases/phpspreadsheet__sep.csv"))
    assert (sep.delimiter, sep.sep_line, sep.header_line, sep.headers, sep.sample) == (
        ";",
        True,
        2,
        ("A", "1"),
        (("2", "3"),),
    )


# --- Horde getcsv edge cases --------------------------------------------------------------

COLUMNS_0_1_2 = {"email": 0, "first_name": 1, "last_name": 2}


def cells(relative: str) -> list[tuple[int, str, str, str]]:
    rows = list(read_rows(data_of(relative), COLUMNS_0_1_2))
    return [(row.line, row.email, row.first_name, row.last_name) for row in rows]


@pytest.mark.parametrize(
    "name", ["simple_cr", "simple_crlf", "simple_lf", "notrailing_crlf", "notrailing_lf"]
)
def test_horde_line_endings(name: str) -> None:
    data = data_of(f"contact-csv/csv-edge-cases/horde-data__getcsv_{name}.csv")
    assert sniff(data).headers == ("one", "two", "three")
    assert cells(f"contact-csv/csv-edge-cases/horde-data__getcsv_{name}.csv") == [
        (2, "four", "five", "six")
    ]


def test_horde_quotes() -> None:
    # RFC 4180 doubled quotes, a quoted newline inside.
    assert cells("contact-csv/csv-edge-cases/horde-data__getcsv_quote7.csv") == [
        (2, "four", 'five"six', 'seven\n"eight"')
    ]
    assert cells("contact-csv/csv-edge-cases/horde-data__getcsv_quote3.csv") == [
        (2, "six", "seven", "eight")
    ]
    assert sniff(data_of("contact-csv/csv-edge-cases/horde-data__getcsv_quote3.csv")).headers == (
        "one two",
        "three, four",
        "five",
    )
    # Spaces after the comma before a quote ("a", "b") are skipped, not kept as ' "b"'.
    assert cells("contact-csv/csv-edge-cases/horde-data__getcsv_001.csv")[0] == (
        2,
        "Field 2-1",
        "Field 2-2",
        "Field 2-3",
    )


def test_horde_multiline_records_keep_their_first_physical_line() -> None:
    assert cells("contact-csv/csv-edge-cases/horde-data__getcsv_multiline1.csv") == [
        (3, "five", "six\nseven", "eight"),
        (5, "nine", "ten", "eleven\ntwelve"),
        (7, "one", "two", "three\n four"),
    ]
    # CR-only line endings with a CR inside a quoted field: lines are counted the same way.
    assert cells("contact-csv/csv-edge-cases/horde-data__getcsv_005.csv") == [
        (2, "Field 2-1", "Field 2-2", "Field 2-3"),
        (4, "Field 3-1", "Field 3-2", "Field 3-3"),
    ]


def test_horde_outlook_fixture_with_multiline_notes() -> None:
    rows = contacts(data_of("contact-csv/csv-edge-cases/horde-data__getcsv_bug_6311.csv"))
    assert rows == [(2, "john@example.com", "John", "Smith", "International Inc")]


# --- vCards -------------------------------------------------------------------------------


def vcard_rows(name: str) -> list[tuple[int, str, str, str, str, str]]:
    rows = list(read_rows(data_of(f"vcard/{name}")))
    assert [row for row in rows if row.error] == []
    return [
        (row.line, row.email, row.first_name, row.last_name, row.company, row.language)
        for row in rows
    ]


def test_vcard_sniff() -> None:
    info = sniff(data_of("vcard/lexnetwork__contacts.vcf"), "contacts.vcf")
    assert (info.format, info.fixed_mapping, info.header_line) == ("vcf", True, None)
    assert info.headers == ("email", "first_name", "last_name", "company", "language")
    assert info.sample[0] == ("jane.doe@acme.example", "Jane", "Doe", "Acme Corp", "")


def test_vcard_21_quoted_printable_with_charset() -> None:
    assert vcard_rows("horde-turba__export_21.vcf") == [
        (1, "jan@horde.org", "Jan", "Schneiderö", "Horde Project", "")
    ]
    android = vcard_rows("ez-vcard__John_Doe_ANDROID.vcf")
    assert android[2] == (3, "", "", "Ñ Ñ Ñ Ñ", "", "")  # a card without EMAIL is still counted
    assert android[4] == (5, "bob@company.com", "Ñ Ñ Ñ", "Ñ Ñ", "ÑÑÑÑÑÑÑÑÑÑÑÑ", "")


def test_vcard_21_lowercase_and_soft_line_breaks() -> None:
    assert vcard_rows("horde-turba__dimitris.vcf") == [
        (
            1,
            "dimitris@ccf.auth.gr",
            "Dimitris",
            "Daskopoulos",
            "Aristotle Univeristy of Thessaloniki",
            "",
        )
    ]
    assert vcard_rows("horde-turba__foo.vcf") == [
        (
            1,
            "kg9ae@geocities.com",
            "David",
            "Norris",
            "Midwest Spectrum Management Alliance, Inc.",
            "",
        ),
        (2, "larry@interactivate.com", "Lawrence", "Sica", "Interactivate, Inc.", ""),
    ]


def test_vcard_several_emails_share_the_card_number() -> None:
    assert vcard_rows("ez-vcard__fullcontact.vcf") == [
        (1, f"{kind}@example.com", "FirstName", "LastName", "Organization1", "")
        for kind in ("home", "work", "school", "other", "custom")
    ]
    assert vcard_rows("lexnetwork__contacts.vcf") == [
        (1, "jane.doe@acme.example", "Jane", "Doe", "Acme Corp", ""),
        (1, "jane@personal.example", "Jane", "Doe", "Acme Corp", ""),
        (2, "bob.smith@globex.example", "Bob", "Smith", "Globex", ""),
    ]
    assert vcard_rows("android-vcard__v21_complicated.vcf") == [
        (1, "forrestgump@walladalla.com", "Forrest", "Gump", "Gump Shrimp Co.", ""),
        (1, "cell@example.com", "Forrest", "Gump", "Gump Shrimp Co.", ""),
    ]


def test_vcard_folded_lines() -> None:
    # Folding cut a UTF-8 character in two: lines are unfolded before they are decoded.
    (row,) = vcard_rows("kcontacts__vcard9.vcf")
    assert row[3] == "123ㄓㄕㄖbcde" + "αβγδ" * 6 + "αβㄤㄓㄕㄖ"
    # A folded EMAIL value is joined; "Name <address>" is passed on for validation to refuse.
    assert vcard_rows("android-vcard__v21_invalid_multiple_line.vcf") == [
        (1, '"Omega" <omega@example.com>', "Omega", "", "", "")
    ]


def test_vcard_charset_parameter() -> None:
    assert vcard_rows("android-vcard__v21_japanese_2.vcf") == [(1, "", "ロイド1", "安藤", "", "")]
    assert vcard_rows("android-vcard__v30_japanese.vcf") == [(1, "", "圭一", "伊能", "", "")]


def test_vcard_40_language_and_company_with_comma() -> None:
    assert vcard_rows("ez-vcard__rfc6350-example.vcf") == [
        (1, "simon.perreault@viagenie.ca", "Simon", "Perreault", "Viagenie", "fr")
    ]
    assert vcard_rows("ez-vcard__outlook-2003.vcf") == [
        (1, "jdoe@hotmail.com", "John", "Doe", "Company, The", "")
    ]


def test_vcard_fn_is_split_when_n_is_missing_and_nested_cards_are_skipped() -> None:
    assert vcard_rows("radicale__broken-vcards2.vcf") == [
        (1, "test-misses-N-or-FN@example.com", "Test", "Example", "", ""),
        (2, "test-misses-N-or-FN@example1.com", "", "", "", ""),
    ]
    assert vcard_rows("android-vcard__v21_nest.vcf") == [(1, "", "", "parent", "", "")]


def test_broken_card_is_an_error_row_and_the_rest_continues() -> None:
    data = (
        b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Good One\r\nEMAIL:good1@example.be\r\nEND:VCARD\r\n"
        b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Bad Params\r\nEMAIL;=x:bad@example.be\r\nEND:VCARD\r\n"
        b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:No Colon\r\nEMAIL;TYPE=work\r\nEND:VCARD\r\n"
        b"BEGIN:VCARD\r\nVERSION:2.1\r\n"
        b"N;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:Lef=C3=A8vre;Fran=C3=A7ois\r\n"
        b"EMAIL;INTERNET;QUOTED-PRINTABLE:francois=40example.be; other=\r\n@example.be\r\n"
        b"LANG:nl-BE\r\nEND:VCARD\r\n"
        b"BEGIN:VCARD\r\nFN:Cut Off\r\nEMAIL:cut@exa"
    )
    rows = list(read_rows(data))
    assert [(row.line, row.email, row.error) for row in rows] == [
        (1, "good1@example.be", None),
        (2, "", readers.CARD_UNREADABLE),
        (3, "", readers.CARD_UNREADABLE),
        (4, "francois@example.be", None),  # QP soft line break, then two addresses split
        (4, "other@example.be", None),
        (5, "", readers.CARD_NOT_CLOSED),  # a truncated upload: no half address
    ]
    assert rows[3] == Row(4, "francois@example.be", "François", "Lefèvre", "", "nl-BE")
    assert "card 2" in rows[1].detail


CARD_21 = (
    "BEGIN:VCARD\r\nVERSION:2.1\r\nN:Lefèvre;François\r\nORG:Crème & Cie;Ventes\r\n"
    "EMAIL;PREF;INTERNET:francois@exemple.be\r\nEND:VCARD\r\n"
)


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (CARD_21.encode("cp1252"), "cp1252"),  # Outlook 2003 writes its code page, no CHARSET
        (codecs.BOM_UTF16_LE + CARD_21.encode("utf-16-le"), "utf-16"),
        (CARD_21.encode("utf-8"), "utf-8"),
    ],
)
def test_vcard_file_encodings(data: bytes, encoding: str) -> None:
    assert sniff(data, "card.vcf").encoding == encoding
    assert list(read_rows(data)) == [
        Row(1, "francois@exemple.be", "François", "Lefèvre", "Crème & Cie")
    ]


def test_vcard_with_a_forced_wrong_encoding_is_an_error_row() -> None:
    (row,) = read_rows(CARD_21.encode("cp1252"), encoding="utf-8")
    assert (row.error, row.email, row.first_name) == (
        readers.UNDECODABLE,
        "francois@exemple.be",
        "Fran\ufffdois",
    )


# --- synthetic: delimiters, header, encodings (G1-G4, G11) --------------------------------


def test_one_column_file_is_not_split_on_a_letter() -> None:
    """csv.Sniffer picks 'm' here (catalogue G1); we count real delimiters only."""
    data = b"email\nmary@example.com\nmax@example.com\nmaxime@example.com\n"
    assert csv.Sniffer().sniff(data.decode()).delimiter == "l"  # what we must not do
    info = sniff(data, "list.csv")
    assert (info.delimiter, info.header_line, info.mapping["email"]) == (",", 1, 0)
    assert [row.email for row in read_rows(data)] == [
        "mary@example.com",
        "max@example.com",
        "maxime@example.com",
    ]
    headerless = b"mary@example.com\r\nmax@example.com\r\n"
    assert sniff(headerless).header_line is None
    assert [(row.line, row.email) for row in read_rows(headerless)] == [
        (1, "mary@example.com"),
        (2, "max@example.com"),
    ]


def test_sep_line_declares_the_delimiter() -> None:
    data = b"sep=;\r\nE-mailadres;Voornaam;Naam\r\nan@voorbeeld.be;An;Peeters, Jr\r\n"
    info = sniff(data)
    assert (info.delimiter, info.sep_line, info.header_line) == (";", True, 2)
    # Belgian Dutch "Voornaam" + "Naam": "Naam" is the family name there.
    assert (info.mapping["first_name"], info.mapping["last_name"]) == (1, 2)
    assert contacts(data) == [(3, "an@voorbeeld.be", "An", "Peeters, Jr", "")]


def test_utf8_bom_does_not_stick_to_the_first_header() -> None:
    data = codecs.BOM_UTF8 + b"email,name\r\njan@example.be,Jan Janssens\r\n"
    info = sniff(data)
    assert info.headers == ("email", "name") and info.mapping["email"] == 0
    assert contacts(data) == [(2, "jan@example.be", "Jan", "Janssens", "")]
    # Forcing "utf-8" on a BOM file does not bring the BOM back.
    assert sniff(data, encoding="utf-8").headers == ("email", "name")
    assert sniff(data, encoding="utf-16-le").encoding == "utf-16-le"  # a wrong choice is allowed


def test_cp1252_file_is_detected() -> None:
    data = "Adresse e-mail;Prénom;Nom;Société\r\nfrancois@exemple.be;François;Lefèvre;Crème & Cie\r\n".encode(
        "cp1252"
    )
    info = sniff(data, "contacts.csv")
    assert (info.encoding, info.encoding_source, info.delimiter) == ("cp1252", "detected", ";")
    assert contacts(data) == [(2, "francois@exemple.be", "François", "Lefèvre", "Crème & Cie")]


def test_forced_encoding_with_undecodable_bytes_gives_line_errors() -> None:
    """Catalogue G3: the marketer chose UTF-8 for a Windows-1252 file."""
    data = "email;voornaam\r\nan@x.be;An\r\nfrancois@x.be;François\r\n".encode("cp1252")
    rows = list(read_rows(data, encoding="utf-8"))
    assert [(row.line, row.email, row.error) for row in rows] == [
        (2, "an@x.be", None),
        (3, "francois@x.be", readers.UNDECODABLE),
    ]
    assert rows[1].first_name == "Fran\ufffdois" and "line 3" in rows[1].detail
    # Bytes outside the mapped columns do not matter.
    assert [row.error for row in read_rows(data, {"email": 0}, encoding="utf-8")] == [None, None]
    # 0x81 is undefined in Windows-1252 too.
    assert [row.error for row in read_rows(b"email\r\na\x81b@x.be\r\n", encoding="cp1252")] == [
        readers.UNDECODABLE
    ]
    assert read_error(data, encoding="no-such-codec").code == readers.ENCODING


def test_utf8_file_with_one_late_cp1252_byte_is_not_utf8() -> None:
    """The UTF-8 check reads the whole file, not the sample only."""
    head = "".join(f"person{n}@example.be;Naam {n}\r\n" for n in range(5000)).encode()
    data = b"email;naam\r\n" + head + "laatste@example.be;Wauters-Dumoulin é\r\n".encode("cp1252")
    assert len(data) > readers.SAMPLE_BYTES
    info = sniff(data)
    assert info.encoding == "cp1252"
    last = list(read_rows(data))[-1]
    assert (last.line, last.email, last.first_name, last.last_name) == (
        5002,
        "laatste@example.be",
        "Wauters-Dumoulin",
        "é",
    )


def test_utf16le_tab_separated_unicode_text() -> None:
    """Excel's "Unicode text": UTF-16LE with BOM, TAB-separated (catalogue G4)."""
    text = "E-mail\tVoornaam\tAchternaam\tTaal\r\nlies@voorbeeld.be\tLies\tDe Smet\tnl\r\n"
    data = codecs.BOM_UTF16_LE + text.encode("utf-16-le")
    info = sniff(data)
    assert (info.encoding, info.delimiter, info.mapping["language"]) == ("utf-16", "\t", 3)
    rows = list(read_rows(data))
    assert rows == [Row(2, "lies@voorbeeld.be", "Lies", "De Smet", "", "nl")]


def test_preamble_before_the_header() -> None:
    data = b"Export contacts salon 2024\r\nGenerated by BadgeScan\r\n\r\nCourriel,Pr\xc3\xa9nom,Entreprise\r\nanne@exemple.fr,Anne,ACME\r\n"
    info = sniff(data)
    assert (info.header_line, info.headers) == (4, ("Courriel", "Prénom", "Entreprise"))
    assert contacts(data) == [(5, "anne@exemple.fr", "Anne", "", "ACME")]


def test_header_in_an_unknown_language_found_before_the_first_address() -> None:
    data = b"Titel\tPostadresse\tWer\r\n\r\nDr.\tjan@example.be\tJan\r\n"
    info = sniff(data)
    assert (info.header_line, info.mapping["email"]) == (1, 1)
    assert [(row.line, row.email) for row in read_rows(data)] == [(3, "jan@example.be")]


def test_blank_lines_and_empty_records_are_skipped() -> None:
    data = b"email,first name\r\n\r\n,,\r\na@x.be,A\r\n  ,  \r\n\r\nb@x.be,B\r\n"
    assert contacts(data) == [(4, "a@x.be", "A", "", ""), (7, "b@x.be", "B", "", "")]


def test_delimiter_can_be_forced() -> None:
    data = b"email|naam\r\na@x.be|An\r\n"
    assert sniff(data).delimiter == "|"
    info = sniff(data, delimiter=",")
    assert info.delimiter == "," and info.headers == ("email|naam",)
    with pytest.raises(ValueError, match="delimiter"):
        sniff(data, delimiter='"')


# --- synthetic: refused files (G5) ---------------------------------------------------------


def test_zip_renamed_csv_is_refused_and_never_extracted(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("contacts.csv", "email\n" + "a@x.be\n" * 10_000)
        archive.writestr("[Content_Types].xml", "<Types/>")  # a .docx-like zip, no workbook

    def no_extraction(*args: object, **kwargs: object) -> None:
        raise AssertionError("a zip member was opened")

    monkeypatch.setattr(zipfile.ZipFile, "open", no_extraction)
    monkeypatch.setattr(zipfile.ZipFile, "read", no_extraction)
    error = read_error(buffer.getvalue())
    assert error.code == readers.ZIP
    with pytest.raises(ReadError) as caught:
        read_rows(buffer.getvalue(), filename="contacts.csv")
    assert caught.value.code == readers.ZIP
    assert read_error(b"PK\x03\x04 not really a zip").code == readers.ZIP


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01", readers.BINARY),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", readers.BINARY),
        (b"email\r\na@x.be\x00\x00\x01\x02\x03\xff\x00binary\x00", readers.BINARY),
        (bytes(range(256)) * 4, readers.BINARY),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, readers.XLS),
        (b"", readers.EMPTY),
        (b"\r\n\r\n   \r\n", readers.EMPTY),
        (codecs.BOM_UTF8, readers.EMPTY),
        (b'<?xml version="1.0"?><vcards/>', readers.UNSUPPORTED),
        (b"<html><body>contacts</body></html>", readers.UNSUPPORTED),
        (b'[{"email": "a@x.be"}]', readers.UNSUPPORTED),
        (b"{\\rtf1\\ansi contacts}", readers.UNSUPPORTED),
    ],
)
def test_files_that_are_not_contact_lists_are_refused(content: bytes, code: str) -> None:
    assert read_error(content).code == code


def test_text_with_many_control_characters_is_binary() -> None:
    assert read_error(b"email\r\n" + b"\x01\x02\x03\x04" * 100).code == readers.BINARY


# --- synthetic: xlsx ----------------------------------------------------------------------


def leads_workbook() -> Workbook:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Info"
    sheet.append(["This workbook has contacts on the second sheet"])
    leads = workbook.create_sheet("Leads salon")
    leads.append(["Beurs Gent 2024"])  # a title row above the header
    leads.append([])
    leads.append(
        ["E-mailadres", "Voornaam", "Achternaam", "Telefoon", "Bedrijf", "Bezocht", "Score"]
    )
    leads.append(
        ["an@voorbeeld.be", "An", "Peeters", 32475123456, "Firma", datetime(2024, 3, 1), 3.0]
    )
    leads.append([])
    leads.append([])
    leads.append(
        [" bo@voorbeeld.be ", "Bo", "Claes", 32.5, 1234, datetime(2024, 3, 1, 14, 30), 12.25]
    )
    leads.append([None, None, None])
    leads.append(
        ["cas@voorbeeld.be / dirk@voorbeeld.be", "Cas", None, None, True, date(2024, 3, 2), None]
    )
    return workbook


def test_xlsx_second_sheet_by_name() -> None:
    data = xlsx_bytes(leads_workbook())
    first = sniff(data, "leads.csv")  # the extension lies; the content decides
    assert (first.format, first.sheet, first.sheets) == ("xlsx", "Info", ("Info", "Leads salon"))
    assert first.mapping["email"] is None
    info = sniff(data, "leads.xlsx", sheet="Leads salon")
    assert (info.header_line, info.encoding, info.delimiter) == (3, None, None)
    assert info.mapping["email"] == 0 and info.mapping["company"] == 4
    # Numbers without ".0", dates in ISO form, booleans as Excel shows them.
    assert info.sample[0] == (
        "an@voorbeeld.be",
        "An",
        "Peeters",
        "32475123456",
        "Firma",
        "2024-03-01",
        "3",
    )
    assert info.sample[1][3:] == ("32.5", "1234", "2024-03-01 14:30:00", "12.25")
    rows = list(read_rows(data, sheet="Leads salon"))
    assert [(row.line, row.email, row.first_name, row.last_name, row.company) for row in rows] == [
        (4, "an@voorbeeld.be", "An", "Peeters", "Firma"),
        (7, "bo@voorbeeld.be", "Bo", "Claes", "1234"),
        (9, "cas@voorbeeld.be", "Cas", "", "TRUE"),
        (9, "dirk@voorbeeld.be", "Cas", "", "TRUE"),
    ]


def test_xlsx_errors() -> None:
    data = xlsx_bytes(leads_workbook())
    assert read_error(data, sheet="Nope").code == readers.SHEET
    empty = Workbook()
    assert read_error(xlsx_bytes(empty)).code == readers.EMPTY


def test_xlsx_declaring_too_much_data_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "MAX_XLSX_UNCOMPRESSED", 1000)
    assert read_error(xlsx_bytes(leads_workbook())).code == readers.TOO_LARGE


def test_xlsx_without_default_style_reads_under_warnings_as_errors() -> None:
    """openpyxl warns "Workbook contains no default style" on such files (some web exports);
    the reader silences that one, or pytest's filterwarnings=error would abort the read."""
    source = zipfile.ZipFile(io.BytesIO(xlsx_bytes(leads_workbook())))
    target = io.BytesIO()
    with zipfile.ZipFile(target, "w") as archive:
        for member in source.infolist():
            content = source.read(member.filename)
            if member.filename == "xl/styles.xml":
                content = (
                    b'<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                    b'<cellXfs count="1"><xf numFmtId="0"/></cellXfs></styleSheet>'
                )
            archive.writestr(member, content)
    rows = list(read_rows(target.getvalue(), sheet="Leads salon"))
    assert [row.email for row in rows][:2] == ["an@voorbeeld.be", "bo@voorbeeld.be"]


def test_damaged_xlsx_is_a_read_error() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "not xml at all")
    assert read_error(buffer.getvalue()).code == readers.XLSX


# --- synthetic: field limit, addresses, mapping (G6, G12) -----------------------------------


def test_field_over_the_csv_limit_is_a_row_error() -> None:
    huge = "x" * 140_000
    data = f"email,note\r\nfirst@x.be,ok\r\nsecond@x.be,{huge}\r\nthird@x.be,ok\r\n".encode()
    rows = list(read_rows(data))
    assert [(row.line, row.email, row.error) for row in rows] == [
        (2, "first@x.be", None),
        (3, "", readers.FIELD_TOO_LARGE),
        (4, "third@x.be", None),
    ]
    assert "line 3" in rows[1].detail and "field larger than field limit" in rows[1].detail


@pytest.mark.parametrize(
    "cell",
    [
        "a@x.be / b@x.be",
        "a@x.be; b@x.be",
        "a@x.be, b@x.be",
        "a@x.be b@x.be",
        "a@x.be ::: b@x.be",
        "a@x.be|b@x.be",
    ],
)
def test_two_addresses_in_one_cell_become_two_rows(cell: str) -> None:
    assert split_addresses(cell) == ["a@x.be", "b@x.be"]
    data = f'email;naam\r\n"{cell}";Jan Peeters\r\nc@x.be;Ann\r\n'.encode()
    assert contacts(data) == [
        (2, "a@x.be", "Jan", "Peeters", ""),
        (2, "b@x.be", "Jan", "Peeters", ""),
        (3, "c@x.be", "Ann", "", ""),
    ]


@pytest.mark.parametrize(
    "cell",
    [
        "Jan <a@x.be>, Piet <b@x.be>",
        "a@x.be and b@x.be",
        "a@@x.be",
        "jan@x.be",
        "",
        "not an address",
    ],
)
def test_cells_that_are_not_a_clean_list_stay_whole(cell: str) -> None:
    assert split_addresses(cell) == [cell]


def test_split_full_name() -> None:
    assert split_full_name("  Jan   van der Berg ") == ("Jan", "van der Berg")
    assert split_full_name("Peeters, An") == ("An", "Peeters")
    assert split_full_name("Madonna") == ("Madonna", "")
    assert split_full_name("") == ("", "")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (["E-mail", "Voornaam", "Achternaam", "Bedrijf", "Taal"], (0, 1, 2, 3, 4)),
        (["Adresse e-mail", "Prénom", "Nom", "Société", "Langue"], (0, 1, 2, 3, 4)),
        (["Courriel ", "PRÉNOM", "Nom de famille", "Entreprise", "langue"], (0, 1, 2, 3, 4)),
        (["E-mailadres", "Voornaam", "Familienaam", "Organisatie", "Taal"], (0, 1, 2, 3, 4)),
        (
            ["Given Name", "Surname", "Organization 1 - Name", "E-mail 1 - Value", "Language"],
            (3, 0, 1, 2, 4),
        ),
        (["First Name", "Family Name", "E-mail Address", "Company", "Lang"], (2, 0, 1, 3, 4)),
        (
            ["E-mail Type", "Email Display Name", "Work E-mail", "Company Main Phone"],
            (2, None, None, None, None),
        ),
        (["email_disabled", "Alternate Email 1", "Contact e-mail"], (2, None, None, None, None)),
    ],
)
def test_guess_mapping_headers(headers: list[str], expected: tuple[int | None, ...]) -> None:
    mapping = guess_mapping(headers)
    assert set(mapping) == set(FIELDS)
    assert (
        tuple(mapping[name] for name in ("email", "first_name", "last_name", "company", "language"))
        == expected
    )


def test_guess_mapping_falls_back_to_the_column_of_addresses() -> None:
    rows = [["Jan", "@jan", "jan@x.be"], ["Piet", "", "piet@x.be"], ["Ann", "", "no address"]]
    assert guess_mapping(["Wie", "Twitter", "Contact"], rows)["email"] == 2
    assert guess_mapping([], [["x", "y"]])["email"] is None


def test_mapping_is_checked_and_can_be_changed() -> None:
    data = b"email,work email,name\r\na@x.be,a@work.be,An\r\n"
    assert [row.email for row in read_rows(data, {"email": 1})] == ["a@work.be"]
    assert [row.first_name for row in read_rows(data, {"email": 0})] == [""]  # unmapped name
    with pytest.raises(ReadError) as caught:
        read_rows(data, {"email": None, "first_name": 2})
    assert caught.value.code == readers.NO_EMAIL_COLUMN
    with pytest.raises(ValueError, match="unknown mapping"):
        read_rows(data, {"e-mail": 0})
    with pytest.raises(ValueError, match="column index"):
        read_rows(data, {"email": -1})
    # A column beyond the row's end is simply empty.
    assert [row.company for row in read_rows(data, {"email": 0, "company": 9})] == [""]


def test_read_rows_is_lazy_and_leaves_the_stream_open(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_bytes(b"email\r\na@x.be\r\nb@x.be\r\n")
    with path.open("rb") as stream:
        info = sniff(stream, path.name)
        assert isinstance(info, FileInfo)
        rows = read_rows(stream)
        assert isinstance(rows, Iterator)
        assert next(rows).email == "a@x.be"
        rows.close()  # abandoning the generator must not close the caller's file
        assert not stream.closed
        assert [row.email for row in read_rows(stream)] == ["a@x.be", "b@x.be"]
    with pytest.raises(TypeError, match="seekable"):
        sniff(NonSeekable(b"email\r\n"))  # type: ignore[arg-type]


def test_stream_closed_by_the_caller_before_the_rows_are_read(tmp_path: Path) -> None:
    """A ``with`` block that ends early must not make the abandoned reader raise later."""
    path = tmp_path / "contacts.csv"
    path.write_bytes(b"email\r\na@x.be\r\nb@x.be\r\n")
    vcf = tmp_path / "card.vcf"
    vcf.write_bytes(CARD_21.encode() * 2)
    for source in (path, vcf):
        with source.open("rb") as stream:
            rows = read_rows(stream)
            assert next(rows).email
        rows.close()


class NonSeekable(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self.data = data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


# --- memory (G7) --------------------------------------------------------------------------


def test_100000_rows_are_streamed_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("E-mailadres;Voornaam;Achternaam;Bedrijf;Taal\r\n")
        for number in range(100_000):
            handle.write(
                f"persoon{number}@voorbeeld.be;Jan{number};Peeters;Firma {number % 97};nl\r\n"
            )
    assert path.stat().st_size > 5_000_000
    count = 0
    last = None
    with path.open("rb") as stream:
        tracemalloc.start()
        try:
            for row in read_rows(stream, filename=path.name):
                count += 1
                last = row  # only the last row is kept
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert count == 100_000
    assert last == Row(
        100_001, "persoon99999@voorbeeld.be", "Jan99999", "Peeters", "Firma 89", "nl"
    )
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"

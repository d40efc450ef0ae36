"""Read the contact files marketers upload after events: delimited text, ``.xlsx`` and vCard.

Pure and streaming: no database, no Flask app, no validation. The import service calls
:func:`sniff` to show a preview (format, encoding, delimiter, header row, guessed column
mapping, first rows) and :func:`read_rows` to stream every contact as a :class:`Row`, with the
options the marketer confirmed. Addresses are only stripped here: whether one is valid is
decided in one place for every door, :func:`preference_center.addresses.parse`.

Why each rule exists (catalogue section G in ``shared/docs/reliability-catalogue.md``):

* The format comes from the content, never from the file name or Content-Type (G5): a zip is
  opened through its central directory only, accepted when it is an Excel workbook and
  refused otherwise; nothing is ever extracted from an arbitrary archive.
* Text is decoded by BOM, then strict UTF-8, then charset-normalizer with a preference for
  Windows-1252, the encoding of "CSV" saved by Excel on a Western European Windows (G2-G4).
  The marketer can force another encoding from the preview; bytes that do not decode then
  become a row error with the line number instead of a crash (G3).
* The delimiter is counted with real CSV quoting over the first records, among ``,`` ``;``
  TAB and ``|``, never ``csv.Sniffer`` alone, which picks a letter for a one-column file (G1).
  Excel's ``sep=;`` first line wins.
* A field over the ``csv`` field limit is one row error, and reading goes on (G6).
* Memory stays flat whatever the number of rows (G7): text goes through ``csv.reader`` over a
  text wrapper of the binary stream, workbooks through openpyxl's read-only mode, vCards card
  by card.
* Two addresses in one cell are split by one explicit rule (G12, :func:`split_addresses`).

Both entry points take ``bytes`` or a seekable binary stream and read it from its start each
time (sniff, then read again), so an uploaded file can be kept on disk and streamed twice.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import quopri
import re
import unicodedata
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import IO, Any, BinaryIO, Final, Literal

__all__ = [
    "ERROR_CODES",
    "FIELDS",
    "ROW_ERROR_CODES",
    "FileInfo",
    "ReadError",
    "Row",
    "guess_mapping",
    "read_rows",
    "sniff",
    "split_addresses",
    "split_full_name",
]

# --- Public types ------------------------------------------------------------------------

#: The fields a column can be mapped to. ``full_name`` is an addition to the five fields a
#: Row carries: many exports only have one "Name" column (Gmail, listmonk, django-newsletter,
#: Thunderbird's "Display Name"); it fills first and last name when both are empty in a row.
FIELDS: Final = ("email", "first_name", "last_name", "company", "language", "full_name")

Format = Literal["csv", "xlsx", "vcf"]

# ReadError codes: stable strings the UI translates; never rename one, add new ones.
EMPTY: Final = "empty"  # no bytes, or nothing but blank lines/rows
ZIP: Final = "zip"  # a zip archive (or something claiming to be one) that is not a workbook
XLS: Final = "xls"  # legacy Excel 97-2003 or password-protected workbook (OLE2 container)
BINARY: Final = "binary"  # an image, PDF, executable... or text with NUL bytes
ENCODING: Final = "encoding"  # the encoding the marketer chose does not exist
UNSUPPORTED: Final = "unsupported"  # text, but XML/HTML/JSON/RTF: not a contact list we read
XLSX: Final = "xlsx"  # a workbook openpyxl cannot open (damaged, encrypted members...)
SHEET: Final = "sheet"  # the chosen sheet does not exist, or the workbook has no worksheet
TOO_LARGE: Final = "too_large"  # workbook declares more uncompressed data than we accept
NO_EMAIL_COLUMN: Final = "no_email_column"  # read_rows called without an email column
ERROR_CODES: Final = (
    EMPTY,
    ZIP,
    XLS,
    BINARY,
    ENCODING,
    UNSUPPORTED,
    XLSX,
    SHEET,
    TOO_LARGE,
    NO_EMAIL_COLUMN,
)

# Row.error codes: one line or card is unusable, the rest of the file is read.
FIELD_TOO_LARGE: Final = "field_too_large"  # csv.Error: field larger than field limit
MALFORMED: Final = "malformed"  # any other csv.Error on that line
UNDECODABLE: Final = "undecodable"  # bytes not valid in the encoding used for the file
CARD_UNREADABLE: Final = "card_unreadable"  # vobject could not parse the card
CARD_NOT_CLOSED: Final = "card_not_closed"  # the file ends inside a card (truncated upload)
ROW_ERROR_CODES: Final = (FIELD_TOO_LARGE, MALFORMED, UNDECODABLE, CARD_UNREADABLE, CARD_NOT_CLOSED)


class ReadError(Exception):
    """The file as a whole cannot be read.

    ``code`` is one of :data:`ERROR_CODES`, stable so the UI can translate it; ``detail`` is
    English for logs and support, never shown as the only message.
    """

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Row:
    """One contact as found in the file, stripped but not validated.

    ``line`` is the physical line where the record starts (1-based, header and preamble
    counted) for text, the worksheet row number for xlsx, the card number for vCard; rows
    split from one cell share it. ``error`` is one of :data:`ROW_ERROR_CODES` when the
    record could not be read; ``detail`` then says why, in English.
    """

    line: int
    email: str
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    language: str = ""
    error: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What :func:`sniff` found: enough for the preview and to read the file again.

    ``encoding`` is the codec name used for text and as the fallback for vCard lines that
    are neither UTF-8 nor declare a CHARSET (None for xlsx); ``encoding_source`` says how it
    was chosen ("bom", "utf-8", "detected", "fallback" or "forced") so the UI can invite the
    marketer to check a guess. ``header_line`` is the line (text) or row (xlsx) of the
    header, None when the file has none. ``sample`` holds the first data records as cells
    (for vCard: email, first name, last name, company, language), ``columns`` the widest.
    """

    filename: str
    format: Format
    encoding: str | None
    encoding_source: str | None
    delimiter: str | None
    sheet: str | None
    sheets: tuple[str, ...]
    header_line: int | None
    headers: tuple[str, ...]
    mapping: Mapping[str, int | None]
    sample: tuple[tuple[str, ...], ...]
    columns: int
    #: Excel's ``sep=X`` first line was present (and is skipped when reading).
    sep_line: bool = False
    #: vCard: the columns are fixed by the format and read_rows ignores any mapping given.
    fixed_mapping: bool = False


# --- Tunables ----------------------------------------------------------------------------

#: Bytes decoded to sniff the format, encoding and delimiter. Enough for hundreds of rows,
#: small enough that charset-normalizer answers in well under a second.
SAMPLE_BYTES: Final = 64 * 1024
#: Data records returned in FileInfo.sample (the preview) and used to guess the mapping.
SAMPLE_ROWS: Final = 20
#: Records looked at to find the header row (a LinkedIn preamble is 3 lines).
HEADER_SCAN_ROWS: Final = 50
#: Records used to count delimiters.
DELIMITER_SCAN_ROWS: Final = 30
DELIMITERS: Final = (",", ";", "\t", "|")
#: An xlsx whose members declare more than this uncompressed is refused before openpyxl
#: touches it: a zip bomb must not keep a worker busy. zipfile stops at the declared size.
MAX_XLSX_UNCOMPRESSED: Final = 512 * 1024 * 1024

_READ_CHUNK: Final = 1024 * 1024

# --- Column names ------------------------------------------------------------------------

# Header names of common exports (Outlook, Gmail/Google Contacts, Thunderbird, Yahoo, WAB,
# KAddressBook, LinkedIn, Eventbrite, Mailchimp, HubSpot, badge scanners) and of Dutch and
# French spreadsheets, compared after _header_key(): case, accents, spaces and punctuation
# removed, so "E-mail Address", "e-mail adres" and "EMAIL_ADDRESS " all become one key.
# Earlier entries win when a file has several matching columns.
_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "email": (
        "email",
        "emailaddress",
        "emailadres",
        "emailadresse",
        "adresseemail",
        "adressemail",
        "adresseelectronique",
        "adressecourriel",
        "courriel",
        "mail",
        "mailadres",
        "mailaddress",
        "emailaddr",
        "email1value",  # Google Contacts
        "email1",
        "email1address",
        "primaryemail",  # Thunderbird
        "emailprimary",
        "workemail",
        "businessemail",
        "emailwork",
    ),
    "first_name": (
        "firstname",
        "first",  # Yahoo
        "givenname",  # Google legacy, KAddressBook
        "voornaam",
        "prenom",
        "fname",  # badge scanners, Mailchimp merge tag
        "forename",
        "roepnaam",
        "voornamen",
        "prenoms",
        "given",
    ),
    "last_name": (
        "lastname",
        "last",  # Yahoo
        "surname",
        "familyname",  # Google legacy, KAddressBook
        "achternaam",
        "familienaam",
        "nom",
        "nomdefamille",
        "lname",
        "family",
    ),
    "company": (
        "company",
        "companyname",
        "organization",
        "organisation",
        "organizationname",  # Google Contacts
        "organisationname",
        "organization1name",  # Google legacy
        "bedrijf",
        "bedrijfsnaam",
        "organisatie",
        "firma",
        "societe",
        "entreprise",
        "nomdelentreprise",
        "raisonsociale",
        "employer",
        "werkgever",
        "companyororganization",  # EZ Badge
        "org",
        "associatedcompany",  # HubSpot
        "section1company",  # Gmail 2007
    ),
    "language": (
        "language",
        "lang",
        "taal",
        "langue",
        "preferredlanguage",
        "voorkeurstaal",
        "taalvoorkeur",
        "correspondentietaal",
        "languepreferee",
        "languedecorrespondance",
        "locale",
    ),
    "full_name": (
        "name",
        "fullname",
        "displayname",  # Thunderbird
        "formattedname",  # KAddressBook
        "naam",
        "volledigenaam",
        "nomcomplet",
        "nometprenom",
        "contactname",
        "contact",
    ),
}

# Headers that mention mail but do not hold the address ("E-mail Type", "E-mail Display
# Name", Substack's "email_disabled", KAddressBook's "Mail Client"...).
_NOT_ADDRESS_WORDS: Final = frozenset(
    "type label display name disabled status format optin opt consent date time sent "
    "verified bounce bounced domain campaign client subscribed unsubscribed count opened "
    "clicked marketing permission preference preferences frequency".split()
)
_SECONDARY_WORDS: Final = frozenset("2 3 4 5 secondary alternate other second additional".split())

# --- Decoding helpers --------------------------------------------------------------------

# Undecodable bytes become this lone surrogate, which no strict decoder ever produces, so a
# row can tell "the file had bad bytes here" from a literal U+FFFD typed by someone.
_MARK: Final = "\udcff"
_MARK_HANDLER: Final = "preference_center.readers.mark"


def _mark_undecodable(exc: UnicodeError) -> tuple[str, int]:
    if isinstance(exc, UnicodeDecodeError):
        return _MARK, exc.end
    raise exc


codecs.register_error(_MARK_HANDLER, _mark_undecodable)

_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

# Magic numbers of files marketers upload by mistake. Only unambiguous prefixes: a CSV may
# well start with "MZ" or "BM", and binaries without a listed magic have NUL bytes anyway.
_BINARY_MAGIC: Final = (
    b"\x89PNG",
    b"\xff\xd8\xff",  # JPEG
    b"GIF87a",
    b"GIF89a",
    b"%PDF-",
    b"\x1f\x8b\x08",  # gzip
    b"7z\xbc\xaf\x27\x1c",
    b"Rar!\x1a\x07",
    b"\x7fELF",
    b"\xfd7zXZ\x00",
    b"II*\x00",  # TIFF
    b"MM\x00*",
)
_ZIP_MAGIC: Final = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_OLE2_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

# How much more "chaos" (charset-normalizer's measure of implausible text) Windows-1252 may
# show than the best guess and still win: it is what Excel on a Belgian Windows writes.
_CP1252_MARGIN: Final = 0.1

_SEP_LINE: Final = re.compile(r"\A\s*sep=(.)\s*\Z", re.IGNORECASE | re.DOTALL)
_ADDRESS_LIKE: Final = re.compile(r"\S@\S")
_ADDRESS_SEPARATORS: Final = re.compile(r"\s*(?:[,;/|]|:::)\s*|\s+")


# --- Public functions --------------------------------------------------------------------


def sniff(
    data: bytes | BinaryIO,
    filename: str = "",
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
) -> FileInfo:
    """Detect what the uploaded file is and how to read it, or raise :class:`ReadError`.

    ``filename`` is only recorded: the format is decided from the content, because an
    extension or a Content-Type is whatever the browser or the marketer made of it.
    ``encoding``, ``delimiter`` and ``sheet`` force the marketer's choice from the preview;
    the header row and mapping are then guessed again under that choice.
    """
    if delimiter is not None:
        _check_delimiter(delimiter)
    stream = _seekable(data)
    head = stream.read(SAMPLE_BYTES)
    stream.seek(0)
    if not head:
        raise ReadError(EMPTY, "the file has no bytes")
    if head.startswith(_ZIP_MAGIC):
        return _sniff_xlsx(stream, filename, sheet)
    if head.startswith(_OLE2_MAGIC):
        raise ReadError(XLS, "legacy .xls or password-protected workbook (OLE2 container)")
    if head.startswith(_BINARY_MAGIC):
        raise ReadError(BINARY, "image, PDF, archive or executable")

    codec, source = _choose_encoding(stream, head, encoding)
    text = _decode_sample(head, codec, truncated=len(head) == SAMPLE_BYTES)
    _refuse_binary_text(text)
    start = text.lstrip("\ufeff \t\r\n")
    if not start:
        raise ReadError(EMPTY, "the file holds only blank lines")
    if start[:11].upper() == "BEGIN:VCARD":
        return _sniff_vcard(stream, filename, codec, source, forced=encoding is not None)
    if _looks_like_markup_or_json(start):
        raise ReadError(UNSUPPORTED, "XML, HTML, JSON or RTF, not a delimited contact list")
    return _sniff_text(text, filename, codec, source, delimiter, len(head) == SAMPLE_BYTES)


def read_rows(
    data: bytes | BinaryIO,
    mapping: Mapping[str, int | None] | None = None,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    filename: str = "",
) -> Iterator[Row]:
    """Stream every contact of the file as :class:`Row`, lazily and in constant memory.

    Give the same ``encoding``/``delimiter``/``sheet`` as the preview's :func:`sniff`: the
    file is sniffed again with them (cheap, and it keeps a background job stateless: it only
    stores the marketer's choices). ``mapping`` maps :data:`FIELDS` to 0-based columns;
    missing keys mean "not in the file"; None uses the guessed mapping. For vCard the
    mapping is fixed and ignored. Blank records are skipped; a record without an address is
    still yielded (email ``""``) so the import report can count it.

    Raises :class:`ReadError` before the first row when the file cannot be read at all,
    including ``no_email_column`` when neither the mapping nor the guess has one.
    """
    info = sniff(data, filename, encoding=encoding, delimiter=delimiter, sheet=sheet)
    stream = _seekable(data)
    if info.format == "vcf":
        assert info.encoding is not None
        return _vcard_rows(stream, info.encoding, forced=encoding is not None)
    columns = _checked_mapping(info.mapping if mapping is None else mapping)
    if columns.get("email") is None:
        raise ReadError(NO_EMAIL_COLUMN, "no column is mapped to the email address")
    if info.format == "xlsx":
        return _xlsx_rows(stream, info, columns)
    return _text_rows(stream, info, columns)


def guess_mapping(
    headers: Sequence[str], sample_rows: Iterable[Sequence[str]] = ()
) -> dict[str, int | None]:
    """Guess which column holds each of :data:`FIELDS`, for the UI to show and change.

    Header names are compared without case, accents, spaces or punctuation against the
    names used by common exports in English, Dutch and French. When no header names the
    address, the column whose sample values mostly contain "@" is taken: files without a
    header row, or with a header in another language, still import.
    """
    keys = [_header_key(h) for h in headers]
    rows = list(sample_rows)
    # The address first: it is the one column an import cannot do without, so a column of
    # addresses headed "Contact" is the email, not a name.
    email = _column_by_alias(_ALIASES["email"], keys, set())
    if email is None:
        email = _column_by_mail_word(headers, set())
    if email is None:
        email = _column_of_addresses(rows, set())
    mapping: dict[str, int | None] = {"email": email}
    used: set[int] = set() if email is None else {email}
    for name in FIELDS[1:]:
        index = _column_by_alias(_ALIASES[name], keys, used)
        mapping[name] = index
        if index is not None:
            used.add(index)
    # Belgian Dutch forms say "Voornaam" + "Naam": there "Naam" is the family name.
    full = mapping["full_name"]
    if (
        mapping["last_name"] is None
        and mapping["first_name"] is not None
        and full is not None
        and keys[full] == "naam"
    ):
        mapping["last_name"], mapping["full_name"] = full, None
    return mapping


def split_addresses(value: str) -> list[str]:
    """Split a cell that holds several addresses, by one explicit rule (catalogue G12).

    Badge scanners and hand-made sheets put ``a@x.be / b@x.be`` (or ``;``, ``,``, ``|``,
    Google's `` ::: ``, or spaces) in one cell. The cell is split only when it holds two or
    more "@" and *every* piece between those separators holds exactly one "@"; otherwise it
    is returned whole so that validation reports it rather than this function guessing
    (``Jan <a@x.be>, Piet <b@x.be>`` stays one invalid value). Returns ``[""]`` for an
    empty cell so the row is still counted.
    """
    value = value.strip()
    if value.count("@") < 2:
        return [value]
    pieces = [piece for piece in _ADDRESS_SEPARATORS.split(value) if piece]
    if len(pieces) >= 2 and all(piece.count("@") == 1 for piece in pieces):
        return pieces
    return [value]


def split_full_name(name: str) -> tuple[str, str]:
    """``(first, last)`` from one name cell or a vCard FN, for files without name columns.

    "Last, First" (exactly one comma) is reversed; otherwise the first word is the first
    name and the rest the last name, which keeps Dutch and French particles together
    ("Jan van der Berg" -> "Jan", "van der Berg"; "Anne de La Tour" -> "Anne", "de La Tour").
    """
    name = " ".join(name.split())
    if not name:
        return "", ""
    if name.count(",") == 1:
        last, first = (part.strip() for part in name.split(","))
        if first and last:
            return first, last
    first, _, last = name.partition(" ")
    return first, last


# --- Input -------------------------------------------------------------------------------


def _seekable(data: bytes | BinaryIO) -> IO[bytes]:
    """A binary stream positioned at 0: both passes read the file from its start."""
    if isinstance(data, bytes | bytearray | memoryview):
        return io.BytesIO(bytes(data))
    if not data.seekable():
        raise TypeError("readers need bytes or a seekable binary stream (they read it twice)")
    data.seek(0)
    return data


def _check_delimiter(delimiter: str) -> None:
    if len(delimiter) != 1 or delimiter in '"\r\n':
        raise ValueError(
            f"a delimiter is one character other than a quote or newline: {delimiter!r}"
        )


def _checked_mapping(mapping: Mapping[str, int | None]) -> dict[str, int | None]:
    unknown = set(mapping) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown mapping fields: {sorted(unknown)}")
    checked: dict[str, int | None] = {}
    for name in FIELDS:
        index = mapping.get(name)
        if index is not None and (
            isinstance(index, bool) or not isinstance(index, int) or index < 0
        ):
            raise ValueError(f"mapping[{name!r}] must be a column index >= 0 or None: {index!r}")
        checked[name] = index
    return checked


# --- Encoding ----------------------------------------------------------------------------


def _choose_encoding(stream: IO[bytes], head: bytes, forced: str | None) -> tuple[str, str]:
    """``(codec, how it was chosen)``: forced, BOM, BOM-less UTF-16, UTF-8, or a guess."""
    if forced:
        try:
            name = codecs.lookup(forced).name
        except LookupError:
            raise ReadError(ENCODING, f"unknown encoding {forced!r}") from None
        # A file saved as "CSV UTF-8" by Excel has a BOM; "utf-8" must not turn it into a
        # stray character in the first header.
        return ("utf-8-sig" if name == "utf-8" else name), "forced"
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name, "bom"
    if b"\x00" in head:
        utf16 = _utf16_without_bom(head)
        if utf16 is None:
            raise ReadError(BINARY, "NUL bytes in what should be text")
        return utf16, "detected"
    bad = _first_non_utf8(stream)
    if bad is None:
        return "utf-8", "utf-8"
    if bad < len(head):
        return _guess_legacy_encoding(head)
    # The first SAMPLE_BYTES were ASCII or UTF-8: guess from the bytes around the first
    # one that is not, where the legacy encoding actually shows.
    stream.seek(max(bad - SAMPLE_BYTES // 4, 0))
    window = stream.read(SAMPLE_BYTES)
    stream.seek(0)
    return _guess_legacy_encoding(window)


def _utf16_without_bom(head: bytes) -> str | None:
    """UTF-16 without BOM shows as text with every other byte NUL; a binary does not."""
    sample = head[:4096]
    pairs = len(sample) // 2
    if pairs < 2:
        return None
    even = sum(1 for i in range(0, 2 * pairs, 2) if sample[i] == 0)
    odd = sum(1 for i in range(1, 2 * pairs, 2) if sample[i] == 0)
    if odd >= 0.3 * pairs and even <= 0.05 * pairs:
        codec = "utf-16-le"
    elif even >= 0.3 * pairs and odd <= 0.05 * pairs:
        codec = "utf-16-be"
    else:
        return None
    try:
        codecs.getincrementaldecoder(codec)("strict").decode(sample[: 2 * pairs])
    except UnicodeDecodeError:
        return None
    return codec


def _first_non_utf8(stream: IO[bytes]) -> int | None:
    """Offset of the first byte that breaks strict UTF-8 in the whole file, or None.

    The whole file, in chunks: one Windows-1252 "é" at line 50,000 makes it a cp1252 file.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    try:
        while chunk := stream.read(_READ_CHUNK):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                # exc.start counts in the decoder's pending bytes plus this chunk.
                return max(offset + exc.start - len(decoder.getstate()[0]), 0)
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return max(offset - len(decoder.getstate()[0]), 0)
    finally:
        stream.seek(0)
    return None


def _guess_legacy_encoding(head: bytes) -> tuple[str, str]:
    """charset-normalizer's guess, with Windows-1252 winning near-ties.

    On short Western samples charset-normalizer ranks cp857, cp932 or cp1250 first with
    the same "chaos" as cp1252 (a 56-byte French file came out as Turkish DOS), while a
    Belgian marketer's non-UTF-8 file is nearly always cp1252. A clearly better guess (e.g.
    Shift_JIS, Mac Roman text where cp1252 reads garbage) is kept.
    """
    from charset_normalizer import from_bytes

    results = from_bytes(head)
    best = results.best()
    if best is None or best.encoding in ("ascii", "utf_8"):
        return "cp1252", "fallback"
    # A match lists the encodings that decode the sample identically (cp1250 reads "é" as
    # cp1252 does), so cp1252 may hide behind another name.
    cp1252 = next((match for match in results if "cp1252" in match.could_be_from_charset), None)
    if cp1252 is not None and cp1252.chaos <= best.chaos + _CP1252_MARGIN:
        return "cp1252", "detected"
    return codecs.lookup(best.encoding).name, "detected"


def _decode_sample(head: bytes, codec: str, *, truncated: bool) -> str:
    decoder = codecs.getincrementaldecoder(codec)(_MARK_HANDLER)
    text = decoder.decode(head, final=not truncated)
    if truncated:
        # Keep whole lines only; the caller also drops the last record, which may be cut.
        cut = max(text.rfind("\n"), text.rfind("\r"))
        text = text[: cut + 1] if cut >= 0 else text
    return text


def _refuse_binary_text(text: str) -> None:
    if "\x00" in text:
        raise ReadError(BINARY, "NUL characters in what should be text")
    controls = sum(
        1 for char in text if (ord(char) < 32 and char not in "\t\n\r\f\v") or char == "\x7f"
    )
    if controls > max(8, len(text) // 100):
        raise ReadError(BINARY, "too many control characters for a text file")


def _looks_like_markup_or_json(start: str) -> bool:
    if start.startswith("<") or start.startswith("{\\rtf"):
        return True
    if start[0] in "{[":
        rest = start[1:].lstrip()
        return not rest or rest[0] in '{["'
    return False


# --- Delimited text ----------------------------------------------------------------------


@dataclass(slots=True)
class _Record:
    line: int
    cells: list[str] | None
    error: str | None = None
    detail: str = ""


def _strip_bom(lines: Iterable[str]) -> Iterator[str]:
    """Drop a BOM left by a forced codec that does not eat it ("utf-16-le" on a BOM file)."""
    first = True
    # A plain loop, not "yield from": closing a generator closes the iterator it delegates
    # to, and that iterator is a TextIOWrapper over the caller's stream.
    for line in lines:
        yield line.removeprefix("\ufeff") if first else line
        first = False


def _release(wrapper: io.TextIOWrapper) -> None:
    """Detach the text wrapper so that collecting it does not close the caller's stream.

    When the caller closed the stream first (a ``with`` block ended before the rows were
    consumed), there is nothing left to protect.
    """
    with contextlib.suppress(ValueError):
        wrapper.detach()


def _records(lines: Iterable[str], delimiter: str) -> Iterator[_Record]:
    """csv records with the physical line each starts on; a csv.Error is one bad record.

    After an error the reader resumes on the next physical line (``csv`` resets its state
    on each call), so one monstrous field does not end the import.
    """
    reader = csv.reader(
        lines,
        delimiter=delimiter,
        quotechar='"',
        doublequote=True,
        skipinitialspace=True,
        strict=False,
    )
    consumed = 0
    while True:
        start = consumed + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            consumed = max(reader.line_num, start)
            message = str(exc)
            code = FIELD_TOO_LARGE if "field larger than field limit" in message else MALFORMED
            yield _Record(start, None, code, f"line {start}: {message}")
            continue
        consumed = reader.line_num
        yield _Record(start, cells)


def _is_blank(cells: Sequence[str]) -> bool:
    return not any(cell.strip() for cell in cells)


def _sniff_text(
    text: str, filename: str, codec: str, source: str, delimiter: str | None, truncated: bool
) -> FileInfo:
    lines = list(_strip_bom(io.StringIO(text, newline="")))
    sep = _SEP_LINE.match(lines[0]) if lines else None
    if delimiter is None:
        delimiter = sep.group(1) if sep else _guess_delimiter(lines[1:] if sep else lines)
    records = [
        record
        for record in _records(lines, delimiter)
        if not (sep and record.line == 1) and (record.cells is None or not _is_blank(record.cells))
    ]
    if truncated and len(records) > 2:
        # The last record may be cut in the middle of a quoted field. Kept when it is the only
        # data row: a first row with a monstrous field must still leave a header to preview.
        records.pop()
    table = [(record.line, record.cells) for record in records if record.cells is not None]
    if not table and not records:
        raise ReadError(EMPTY, "no records")
    return _tabular_info(filename, "csv", table, codec, source, delimiter, None, (), bool(sep))


def _guess_delimiter(lines: Sequence[str]) -> str:
    """The delimiter that splits most records into the same number (>1) of fields.

    Records are parsed with quoting, so commas inside quoted names or a quoted LinkedIn
    preamble do not count. Ties go to more fields, then to the order of DELIMITERS. A file
    where nothing splits is one column, read with ",".
    """
    best, best_score = DELIMITERS[0], (0, 0)
    for candidate in DELIMITERS:
        counts: list[int] = []
        for record in _records(lines, candidate):
            if record.cells is not None and not _is_blank(record.cells):
                counts.append(len(record.cells))
            if len(counts) >= DELIMITER_SCAN_ROWS:
                break
        split = [count for count in counts if count > 1]
        if not split:
            continue
        width, frequency = Counter(split).most_common(1)[0]
        score = (frequency, width)
        if score > best_score:
            best, best_score = candidate, score
    return best


def _text_rows(stream: IO[bytes], info: FileInfo, mapping: dict[str, int | None]) -> Iterator[Row]:
    assert info.encoding is not None and info.delimiter is not None
    wrapper = io.TextIOWrapper(stream, encoding=info.encoding, errors=_MARK_HANDLER, newline="")
    try:
        for record in _records(_strip_bom(wrapper), info.delimiter):
            if info.sep_line and record.line == 1:
                continue
            if info.header_line is not None and record.line <= info.header_line:
                continue
            if record.cells is None:
                assert record.error is not None
                yield Row(record.line, "", error=record.error, detail=record.detail)
                continue
            if _is_blank(record.cells):
                continue
            yield from _rows_from_cells(record.line, record.cells, mapping, info.encoding)
    finally:
        _release(wrapper)


def _rows_from_cells(
    line: int, cells: Sequence[str], mapping: dict[str, int | None], encoding: str | None
) -> Iterator[Row]:
    def cell(name: str) -> str:
        index = mapping.get(name)
        return cells[index].strip() if index is not None and index < len(cells) else ""

    values = {name: cell(name) for name in FIELDS}
    if any(_MARK in value for value in values.values()):
        shown = {name: value.replace(_MARK, "\ufffd") for name, value in values.items()}
        yield Row(
            line,
            shown["email"],
            shown["first_name"],
            shown["last_name"],
            shown["company"],
            shown["language"],
            error=UNDECODABLE,
            detail=f"line {line}: bytes that are not valid {encoding}",
        )
        return
    first, last = values["first_name"], values["last_name"]
    if not first and not last and values["full_name"]:
        first, last = split_full_name(values["full_name"])
    for address in split_addresses(values["email"]):
        yield Row(line, address, first, last, values["company"], values["language"])


# --- Header and mapping ------------------------------------------------------------------


def _tabular_info(
    filename: str,
    fmt: Format,
    table: list[tuple[int, list[str]]],
    codec: str | None,
    source: str | None,
    delimiter: str | None,
    sheet: str | None,
    sheets: tuple[str, ...],
    sep_line: bool,
) -> FileInfo:
    header_index = _find_header([cells for _, cells in table[:HEADER_SCAN_ROWS]])
    if header_index is None:
        header_line, headers, data = None, (), table
    else:
        header_line = table[header_index][0]
        headers = tuple(cell.strip() for cell in table[header_index][1])
        data = table[header_index + 1 :]
    sample = tuple(tuple(cell.strip() for cell in cells) for _, cells in data[:SAMPLE_ROWS])
    columns = max([len(headers), *(len(cells) for cells in sample)])
    return FileInfo(
        filename=filename,
        format=fmt,
        encoding=codec,
        encoding_source=source,
        delimiter=delimiter,
        sheet=sheet,
        sheets=sheets,
        header_line=header_line,
        headers=headers,
        mapping=guess_mapping(headers, sample),
        sample=sample,
        columns=columns,
        sep_line=sep_line,
    )


def _find_header(rows: Sequence[Sequence[str]]) -> int | None:
    """Index of the header row among the first non-blank rows, or None when there is none.

    The first row that names an email column is the header (this skips LinkedIn's "Notes:"
    preamble). Failing that, the row before the first row with an address in it; a file
    whose first row already holds an address has no header (Thunderbird, Palm). A file
    with no address at all in its first rows is assumed to start with its header.
    """
    for index, cells in enumerate(rows):
        has_address = any(_ADDRESS_LIKE.search(cell) for cell in cells)
        if not has_address and _email_header(cells):
            return index
        if has_address:
            return index - 1 if index > 0 else None
    return 0 if rows else None


def _email_header(cells: Sequence[str]) -> bool:
    keys = [_header_key(cell) for cell in cells]
    return (
        _column_by_alias(_ALIASES["email"], keys, set()) is not None
        or _column_by_mail_word(cells, set()) is not None
    )


def _header_key(header: str) -> str:
    decomposed = unicodedata.normalize("NFKD", header)
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return re.sub(r"[\W_]+", "", bare.casefold())


def _column_by_alias(aliases: Sequence[str], keys: Sequence[str], used: set[int]) -> int | None:
    for alias in aliases:
        for index, key in enumerate(keys):
            if key == alias and index not in used:
                return index
    return None


def _column_by_mail_word(headers: Sequence[str], used: set[int]) -> int | None:
    """A header like "Work e-mail" or "Courriel (pro)": short, says mail, nothing else.

    Headers that mention mail for another purpose ("E-mail Type", "email_disabled") are
    skipped, and secondary addresses ("E-mail 2", "Alternate Email") come last.
    """
    candidates: list[tuple[int, int]] = []
    for index, header in enumerate(headers):
        if index in used or len(header) > 40:
            continue
        decomposed = unicodedata.normalize("NFKD", header.casefold())
        bare = "".join(char for char in decomposed if not unicodedata.combining(char))
        words = re.findall(r"[a-z0-9]+", re.sub(r"\be[\s_-]?mail", "email", bare))
        if len(words) > 5 or not words:
            continue
        if not ({"email", "courriel"} & set(words) or "mail" in words):
            continue
        if _NOT_ADDRESS_WORDS & set(words):
            continue
        candidates.append((1 if _SECONDARY_WORDS & set(words) else 0, index))
    return min(candidates)[1] if candidates else None


def _column_of_addresses(rows: Iterable[Sequence[str]], used: set[int]) -> int | None:
    """The column where most non-empty sample values contain "@" (leftmost on a tie)."""
    filled: Counter[int] = Counter()
    addresses: Counter[int] = Counter()
    for cells in rows:
        for index, cell in enumerate(cells):
            if index in used or not cell.strip():
                continue
            filled[index] += 1
            if _ADDRESS_LIKE.search(cell):
                addresses[index] += 1
    best: tuple[float, int] | None = None
    for index, count in addresses.items():
        ratio = count / filled[index]
        if ratio > 0.5 and (best is None or (ratio, -index) > (best[0], -best[1])):
            best = (ratio, index)
    return best[1] if best else None


# --- xlsx --------------------------------------------------------------------------------


def _check_workbook_zip(stream: IO[bytes]) -> None:
    """Refuse any zip that is not an xlsx, reading the central directory only."""
    try:
        with zipfile.ZipFile(stream) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise ReadError(ZIP, f"not a readable zip archive: {exc}") from None
    finally:
        stream.seek(0)
    names = {member.filename for member in members}
    if "[Content_Types].xml" not in names or "xl/workbook.xml" not in names:
        raise ReadError(ZIP, "a zip archive that is not an Excel workbook")
    declared = sum(member.file_size for member in members)
    if declared > MAX_XLSX_UNCOMPRESSED:
        raise ReadError(TOO_LARGE, f"the workbook unpacks to {declared} bytes")


def _open_workbook(stream: IO[bytes]) -> Any:  # openpyxl is untyped; imported lazily
    from openpyxl import load_workbook

    stream.seek(0)
    # openpyxl warns about things it repairs or drops that do not matter for reading values
    # ("Workbook contains no default style", unsupported extensions). Real exports trigger
    # them, and under -W error they would abort the import, so they are silenced here, only
    # for openpyxl's UserWarnings and only around this synchronous call (catch_warnings is
    # process-global: it must never be held across a yield).
    # read_only streams the sheet XML row by row; data_only gives a formula cell the value
    # Excel last computed (what the marketer saw), never the formula, and evaluates nothing.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"openpyxl\.")
        try:
            return load_workbook(stream, read_only=True, data_only=True, keep_links=False)
        except Exception as exc:  # openpyxl raises KeyError, ValueError, TypeError... on damage
            raise ReadError(XLSX, f"{type(exc).__name__}: {exc}") from None


def _worksheet(workbook: Any, sheet: str | None) -> Any:
    worksheets = workbook.worksheets
    if not worksheets:
        raise ReadError(SHEET, "the workbook has no worksheet")
    if sheet is None:
        return worksheets[0]
    for worksheet in worksheets:
        if worksheet.title == sheet:
            return worksheet
    raise ReadError(SHEET, f"no worksheet named {sheet!r}")


def _xlsx_records(worksheet: Any) -> Iterator[tuple[int, list[str]]]:
    """Rows as text with their row number; empty rows come out as empty lists.

    Dimensions are reset first: several generators write a wrong "A1:A1" dimension, and
    read-only mode would then return only column A.
    """
    worksheet.reset_dimensions()
    number = 0
    for cells in worksheet.iter_rows():
        row = next((cell.row for cell in cells if getattr(cell, "row", None)), None)
        number = row if row is not None else number + 1
        yield number, [_cell_text(cell.value) for cell in cells]


def _cell_text(value: object) -> str:
    """A cell as the marketer sees it: 32475123456 not "32475123456.0", dates ISO."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        if value.time() == time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def _sniff_xlsx(stream: IO[bytes], filename: str, sheet: str | None) -> FileInfo:
    _check_workbook_zip(stream)
    workbook = _open_workbook(stream)
    try:
        worksheet = _worksheet(workbook, sheet)
        table: list[tuple[int, list[str]]] = []
        for number, cells in _xlsx_records(worksheet):
            if not _is_blank(cells):
                table.append((number, cells))
            if len(table) >= HEADER_SCAN_ROWS + SAMPLE_ROWS:
                break
        if not table:
            raise ReadError(EMPTY, f"worksheet {worksheet.title!r} is empty")
        sheets = tuple(ws.title for ws in workbook.worksheets)
        return _tabular_info(
            filename, "xlsx", table, None, None, None, worksheet.title, sheets, False
        )
    finally:
        workbook.close()
        stream.seek(0)


def _xlsx_rows(stream: IO[bytes], info: FileInfo, mapping: dict[str, int | None]) -> Iterator[Row]:
    workbook = _open_workbook(stream)
    try:
        worksheet = _worksheet(workbook, info.sheet)
        for number, cells in _xlsx_records(worksheet):
            if info.header_line is not None and number <= info.header_line:
                continue
            if not _is_blank(cells):
                yield from _rows_from_cells(number, cells, mapping, None)
    finally:
        workbook.close()


# --- vCard -------------------------------------------------------------------------------

# Only these properties are handed to vobject. A damaged PHOTO, a date vobject dislikes or a
# vendor extension must not cost the contact, and dropping photos keeps memory small.
_VCARD_KEEP: Final = frozenset({"N", "FN", "EMAIL", "ORG", "LANG"})
_VCARD_PROPERTY: Final = re.compile(rb'^((?:[^:"]|"[^"]*")*):(.*)\Z', re.DOTALL)
_VCARD_NAME: Final = re.compile(rb"\s*(?:[A-Za-z0-9-]+\.)?([A-Za-z0-9-]+)")
_VCARD_COLUMNS: Final = ("email", "first_name", "last_name", "company", "language")


@dataclass(slots=True)
class _Card:
    number: int
    lines: list[str]
    closed: bool
    undecodable: bool
    #: Why the card cannot be trusted (an EMAIL line without a value separator), or None.
    problem: str | None = None


def _sniff_vcard(
    stream: IO[bytes], filename: str, codec: str, source: str, *, forced: bool
) -> FileInfo:
    sample: list[tuple[str, ...]] = []
    rows = _vcard_rows(stream, codec, forced=forced)
    try:
        for row in rows:
            sample.append((row.email, row.first_name, row.last_name, row.company, row.language))
            if len(sample) >= SAMPLE_ROWS:
                break
    finally:
        rows.close()
        stream.seek(0)
    return FileInfo(
        filename=filename,
        format="vcf",
        encoding=codec,
        encoding_source=source,
        delimiter=None,
        sheet=None,
        sheets=(),
        header_line=None,
        headers=_VCARD_COLUMNS,
        mapping={
            name: (_VCARD_COLUMNS.index(name) if name in _VCARD_COLUMNS else None)
            for name in FIELDS
        },
        sample=tuple(sample),
        columns=len(_VCARD_COLUMNS),
        fixed_mapping=True,
    )


def _vcard_physical_lines(stream: IO[bytes], codec: str) -> Iterator[tuple[bytes, str | None]]:
    """Physical lines as bytes, plus the codec their default text is in.

    Bytes, not text, because vCard 2.1 declares a CHARSET per property and folding may cut a
    UTF-8 character in two (KAddressBook does): a line can only be decoded once unfolded.
    Latin-1 is the identity on bytes, which gives universal newlines for free; UTF-16/32
    files are decoded first and re-encoded as UTF-8.
    """
    wide = codec.startswith(("utf-16", "utf-32", "utf_16", "utf_32"))
    wrapper = io.TextIOWrapper(
        stream, encoding=codec if wide else "latin-1", errors=_MARK_HANDLER, newline=None
    )
    try:
        first = True
        for line in wrapper:
            text = line.rstrip("\n")
            if wide:
                yield text.removeprefix("\ufeff").encode("utf-8", "surrogatepass"), "utf-8"
            else:
                raw = text.encode("latin-1")
                if first:
                    raw = raw.removeprefix(codecs.BOM_UTF8)
                yield raw, None
            first = False
    finally:
        _release(wrapper)


def _vcard_logical_lines(
    physical: Iterable[tuple[bytes, str | None]],
) -> Iterator[tuple[bytes, str | None]]:
    """Unfold: a line starting with space/TAB continues the previous one (all versions),
    and a quoted-printable value ending in "=" continues on the next line (vCard 2.1)."""
    current: bytearray | None = None
    codec: str | None = None
    soft_break = False
    for raw, line_codec in physical:
        if current is not None and soft_break:
            del current[-1:]
            current += raw
        elif current is not None and raw[:1] in (b" ", b"\t"):
            current += raw[1:]
        else:
            if current:
                yield bytes(current), codec
            current, codec = bytearray(raw), line_codec
        soft_break = (
            current.endswith(b"=") and b"QUOTED-PRINTABLE" in _property_head(current).upper()
        )
    if current:
        yield bytes(current), codec


def _property_head(line: bytes | bytearray) -> bytes:
    match = _VCARD_PROPERTY.match(bytes(line))
    return match.group(1) if match else b""


def _vcard_cards(stream: IO[bytes], codec: str, *, forced: bool) -> Iterator[_Card]:
    """Cards one at a time, with only the kept properties decoded to text for vobject.

    Cards nested inside a card (vCard 2.1 AGENT) are skipped: they describe someone's
    assistant, not a contact of the file. Text outside cards is ignored.
    """
    depth = 0
    number = 0
    lines: list[str] = []
    undecodable = False
    problem: str | None = None
    for logical, line_codec in _vcard_logical_lines(_vcard_physical_lines(stream, codec)):
        match = _VCARD_PROPERTY.match(logical)
        if not match:
            # Blank, "# comment" or junk between properties is ignored (KAddressBook writes a
            # bare "FN"), but an EMAIL line that cannot be read must not silently lose an
            # address: the card is reported instead.
            junk = _VCARD_NAME.match(logical)
            if depth == 1 and junk and junk.group(1).upper() == b"EMAIL":
                problem = problem or "unreadable EMAIL line"
            continue
        head, value = match.group(1), match.group(2)
        params = head.split(b";")
        name = params[0].rsplit(b".", 1)[-1].strip().upper()
        if name == b"BEGIN" and value.strip().upper() == b"VCARD":
            depth += 1
            if depth == 1:
                number += 1
                lines, undecodable, problem = [], False, None
            continue
        if name == b"END" and value.strip().upper() == b"VCARD":
            if depth == 1:
                yield _Card(number, lines, True, undecodable, problem)
            depth = max(depth - 1, 0)
            continue
        if depth != 1 or name.decode("ascii", "replace") not in _VCARD_KEEP:
            continue
        text, bad = _vcard_decode_property(params, value, line_codec or codec, forced=forced)
        lines.append(text)
        undecodable = undecodable or bad
    if depth >= 1:
        yield _Card(number, lines, False, undecodable, problem)


def _vcard_decode_property(
    params: list[bytes], value: bytes, codec: str, *, forced: bool
) -> tuple[str, bool]:
    """One content line as text for vobject: value decoded, CHARSET/QP parameters removed.

    Quoted-printable and CHARSET are resolved here rather than by vobject, which decodes
    QP strictly and fails the whole card on one wrong byte or unknown charset name.
    """
    charset: str | None = None
    qp = False
    kept: list[str] = [params[0].decode("ascii", "replace")]
    for param in params[1:]:
        key, _, val = param.partition(b"=")
        key_upper, val_upper = key.strip().upper(), val.strip().strip(b'"').upper()
        if key_upper == b"CHARSET":
            charset = val.strip().strip(b'"').decode("ascii", "replace")
            continue
        if key_upper == b"QUOTED-PRINTABLE" or (
            key_upper == b"ENCODING" and val_upper == b"QUOTED-PRINTABLE"
        ):
            qp = True
            continue
        if key_upper == b"ENCODING" and val_upper == b"8BIT":
            continue
        kept.append(param.decode("latin-1"))
    raw = quopri.decodestring(value) if qp else value
    text, bad = _decode_vcard_value(raw, charset, codec, forced=forced)
    if qp:  # QP can encode line breaks; vobject needs them escaped on one line
        text = text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")
    return ";".join(kept) + ":" + text, bad


def _decode_vcard_value(
    raw: bytes, charset: str | None, codec: str, *, forced: bool
) -> tuple[str, bool]:
    if charset:
        try:
            return raw.decode(charset, "replace"), False
        except LookupError:
            pass  # an unknown CHARSET name: fall through to the file's encoding
    if not forced:
        try:
            return raw.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    text = raw.decode(codec, _MARK_HANDLER)
    return text.replace(_MARK, "\ufffd"), _MARK in text


def _vcard_rows(stream: IO[bytes], codec: str, *, forced: bool) -> Iterator[Row]:
    for card in _vcard_cards(stream, codec, forced=forced):
        if not card.closed:
            yield Row(
                card.number, "", error=CARD_NOT_CLOSED, detail=f"card {card.number}: no END:VCARD"
            )
            continue
        if card.problem:
            yield Row(
                card.number, "", error=CARD_UNREADABLE, detail=f"card {card.number}: {card.problem}"
            )
            continue
        try:
            yield from _card_rows(card)
        except Exception as exc:  # vobject raises ParseError, ValueError, TypeError... per card
            yield Row(card.number, "", error=CARD_UNREADABLE, detail=f"card {card.number}: {exc}")


def _card_rows(card: _Card) -> Iterator[Row]:
    import vobject

    # Every card is parsed as 3.0: its escaping rules also serve 4.0, and vobject has no
    # behaviour for 2.1 or 4.0 (N and ORG would stay unsplit strings).
    text = "\r\n".join(["BEGIN:VCARD", "VERSION:3.0", *card.lines, "END:VCARD", ""])
    parsed = vobject.readOne(text, transform=True, allowQP=False)
    contents = parsed.contents

    def first_value(key: str) -> object:
        lines = contents.get(key) or []
        return lines[0].value if lines else None

    first, last = _name_parts(first_value("n"))
    if not first and not last:
        fn = first_value("fn")
        first, last = split_full_name(fn if isinstance(fn, str) else "")
    company = _org_name(first_value("org"))
    language = _preferred(contents.get("lang") or [])
    addresses = [
        address
        for line in contents.get("email") or []
        for address in split_addresses(str(line.value))
        if address
    ]
    error, detail = (
        (UNDECODABLE, f"card {card.number}: bytes that are not valid text")
        if card.undecodable
        else (None, "")
    )
    for address in addresses or [""]:
        yield Row(card.number, address, first, last, company, language, error=error, detail=detail)


def _text_of(part: object) -> str:
    """vobject also splits structured values on commas ("Company, The" becomes two items);
    a comma inside a company or family name is the name, so put it back as written."""
    if isinstance(part, list | tuple):
        return ",".join(str(item) for item in part).strip()
    return str(part or "").strip()


def _name_parts(value: object) -> tuple[str, str]:
    if value is None:
        return "", ""
    if isinstance(value, str):  # vobject could not split it
        parts = value.split(";")
        return (parts[1].strip() if len(parts) > 1 else ""), parts[0].strip()
    return _text_of(getattr(value, "given", "")), _text_of(getattr(value, "family", ""))


def _org_name(value: object) -> str:
    """The organisation is ORG's first component; the others are departments."""
    if isinstance(value, list | tuple):
        return _text_of(value[0]) if value else ""
    return str(value or "").split(";")[0].strip()


def _preferred(lines: Sequence[object]) -> str:
    """LANG with the lowest PREF (vCard 4.0), else the first."""

    def rank(line: object) -> int:
        params = getattr(line, "params", {})
        try:
            return int(params.get("PREF", ["100"])[0])
        except (ValueError, IndexError):
            return 100

    ordered = sorted(lines, key=rank)
    return str(getattr(ordered[0], "value", "")).strip() if ordered else ""

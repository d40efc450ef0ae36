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

Layout (imports only point down this list, never back up to the package): this module decides
the format and dispatches; :mod:`.text`, :mod:`.xlsx` and :mod:`.vcard` read one format each;
:mod:`.mapping` finds the header row and guesses the columns; :mod:`.cells` turns values into
contacts; :mod:`.encoding` chooses the codec; :mod:`.common` holds the types, codes, tunables
and stream helpers they all share.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Mapping
from typing import IO, BinaryIO, Final

from .cells import split_addresses, split_full_name

# Every public name of the former single-module ``readers`` stays an attribute of the package
# (``readers.UNSUPPORTED``, ``readers.SAMPLE_BYTES``...): the UI and the tests use them.
from .common import BINARY as BINARY
from .common import CARD_NOT_CLOSED as CARD_NOT_CLOSED
from .common import CARD_UNREADABLE as CARD_UNREADABLE
from .common import DELIMITER_SCAN_ROWS as DELIMITER_SCAN_ROWS
from .common import DELIMITERS as DELIMITERS
from .common import EMPTY as EMPTY
from .common import ENCODING as ENCODING
from .common import ERROR_CODES as ERROR_CODES
from .common import FIELD_TOO_LARGE as FIELD_TOO_LARGE
from .common import FIELDS as FIELDS
from .common import HEADER_SCAN_ROWS as HEADER_SCAN_ROWS
from .common import MALFORMED as MALFORMED
from .common import NO_EMAIL_COLUMN as NO_EMAIL_COLUMN
from .common import ROW_ERROR_CODES as ROW_ERROR_CODES
from .common import SAMPLE_BYTES as SAMPLE_BYTES
from .common import SAMPLE_ROWS as SAMPLE_ROWS
from .common import SHEET as SHEET
from .common import TOO_LARGE as TOO_LARGE
from .common import UNDECODABLE as UNDECODABLE
from .common import UNSUPPORTED as UNSUPPORTED
from .common import XLS as XLS
from .common import XLSX as XLSX
from .common import ZIP as ZIP
from .common import FileInfo as FileInfo
from .common import Format as Format
from .common import ReadError as ReadError
from .common import Row as Row
from .common import _check_delimiter, _checked_mapping, _seekable
from .encoding import (
    _choose_encoding,
    _decode_sample,
    _looks_like_markup_or_json,
    _refuse_binary_text,
)
from .mapping import guess_mapping
from .text import _sniff_text, _text_rows
from .vcard import _sniff_vcard, _vcard_rows
from .xlsx import _sniff_xlsx, _xlsx_rows

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

# --- Format from the content -------------------------------------------------------------

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

# Defined here rather than with the tunables in .common: _check_workbook_zip (below) reads it
# from this module, so monkeypatch.setattr(readers, "MAX_XLSX_UNCOMPRESSED", ...) in the tests
# still takes effect. Move the two together or not at all.
#: An xlsx whose members declare more than this uncompressed is refused before openpyxl
#: touches it: a zip bomb must not keep a worker busy. zipfile stops at the declared size.
MAX_XLSX_UNCOMPRESSED: Final = 512 * 1024 * 1024


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
        _check_workbook_zip(stream)
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

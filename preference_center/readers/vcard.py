"""vCard 2.1, 3.0 and 4.0 files, card by card (G7), through vobject for the kept properties."""

from __future__ import annotations

import codecs
import io
import quopri
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Final

from .cells import split_addresses, split_full_name
from .common import (
    _MARK,
    _MARK_HANDLER,
    CARD_NOT_CLOSED,
    CARD_UNREADABLE,
    FIELDS,
    SAMPLE_ROWS,
    UNDECODABLE,
    FileInfo,
    Row,
    _release,
)

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

"""Choosing the codec of a text file and checking that what it decodes to is text (G2-G4)."""

from __future__ import annotations

import codecs
from typing import IO, Final

from .common import _MARK_HANDLER, _READ_CHUNK, BINARY, ENCODING, SAMPLE_BYTES, ReadError

_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

# How much more "chaos" (charset-normalizer's measure of implausible text) Windows-1252 may
# show than the best guess and still win: it is what Excel on a Belgian Windows writes.
_CP1252_MARGIN: Final = 0.1


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

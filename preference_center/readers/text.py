"""Delimited text ("CSV" with any of ``,`` ``;`` TAB ``|``): delimiter guess (G1), records
with their physical line, one row error per bad record (G6), streamed in flat memory (G7)."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Final

from .cells import _rows_from_cells
from .common import (
    _MARK_HANDLER,
    DELIMITER_SCAN_ROWS,
    DELIMITERS,
    EMPTY,
    FIELD_TOO_LARGE,
    MALFORMED,
    FileInfo,
    ReadError,
    Row,
    _is_blank,
    _release,
)
from .mapping import _tabular_info

_SEP_LINE: Final = re.compile(r"\A\s*sep=(.)\s*\Z", re.IGNORECASE | re.DOTALL)


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
            # A for loop, re-entered after each error: the csv reader resumes where it was.
            for cells in reader:
                yield _Record(start, cells)
                start = consumed = reader.line_num
                start += 1
            return
        except csv.Error as exc:
            consumed = max(reader.line_num, start)
            message = str(exc)
            code = FIELD_TOO_LARGE if "field larger than field limit" in message else MALFORMED
            yield _Record(start, None, code, f"line {start}: {message}")


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
    # Records up to this line are the sep= line and the header (or a preamble before it).
    skip_to = max(info.header_line or 0, 1 if info.sep_line else 0)
    encoding = info.encoding
    try:
        for record in _records(_strip_bom(wrapper), info.delimiter):
            line, cells = record.line, record.cells
            if line <= skip_to:
                continue
            if cells is None:
                assert record.error is not None
                yield Row(line, "", error=record.error, detail=record.detail)
                continue
            if _is_blank(cells):
                continue
            yield from _rows_from_cells(line, cells, mapping, encoding)
    finally:
        _release(wrapper)

"""Excel workbooks (``.xlsx``), read through openpyxl's read-only mode (G7).

Only a zip that :func:`~preference_center.readers._check_workbook_zip` accepted gets here:
that check, which decides the format from the content (G5), lives with ``sniff``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import date, datetime, time
from typing import IO, Any

from .cells import _rows_from_cells
from .common import (
    EMPTY,
    HEADER_SCAN_ROWS,
    SAMPLE_ROWS,
    SHEET,
    XLSX,
    FileInfo,
    ReadError,
    Row,
    _is_blank,
)
from .mapping import _tabular_info


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
    """The preview of a workbook that :func:`~preference_center.readers._check_workbook_zip`
    has already let through (``sniff`` checks the zip before calling this)."""
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

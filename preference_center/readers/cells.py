"""From values to contacts, shared by the formats: one record's cells to :class:`Row` with
the mapping applied, and the explicit rules that split a cell holding several addresses (G12)
and a full name."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Final

from .common import _MARK, FIELDS, UNDECODABLE, Row

_ADDRESS_SEPARATORS: Final = re.compile(r"\s*(?:[,;/|]|:::)\s*|\s+")


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


def _rows_from_cells(
    line: int, cells: Sequence[str], mapping: dict[str, int | None], encoding: str | None
) -> Iterator[Row]:
    # Runs once per record of every file: a list comprehension over the mapped columns, in
    # the order of FIELDS, and one search for the marker in all of them at once.
    width = len(cells)
    values = [
        cells[index].strip() if index is not None and index < width else ""
        for index in map(mapping.get, FIELDS)
    ]
    email, first, last, company, language, full_name = values
    if _MARK in "".join(values):
        shown = [value.replace(_MARK, "\ufffd") for value in values]
        yield Row(
            line,
            *shown[:5],
            error=UNDECODABLE,
            detail=f"line {line}: bytes that are not valid {encoding}",
        )
        return
    if not first and not last and full_name:
        first, last = split_full_name(full_name)
    for address in split_addresses(email):
        yield Row(line, address, first, last, company, language)

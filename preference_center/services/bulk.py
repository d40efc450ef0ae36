"""Writing and finding thousands of rows per statement, in each database's fastest way.

An import writes two rows for each line of a contact file (the contact and its report row)
and looks up every address three times. Through the ORM, and even through Core's
``executemany``, SQLAlchemy spends more time on each row than the database does: parameter
processing, defaults and type conversion for every value of every row, and on PostgreSQL one
Bind/Execute round per row. So, for these bulk statements only:

* Values that are the same for a whole chunk (the batch id, enums, timestamps, column
  defaults) are turned into their database form once, by the column's own type, and every
  other value is already a plain ``str``/``int``/``None``; enum columns go through a memo.
* SQLite gets the INSERT compiled from the table and one DBAPI ``executemany`` of tuples.
* PostgreSQL gets ``COPY ... FROM STDIN`` when no row can conflict, and one
  ``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING`` when one can; lookups use
  ``= ANY(array)``, one statement text whatever the number of values, so the server does not
  parse and plan a new ``IN`` list of a thousand placeholders for every chunk.

Everything runs on the session's own connection, inside its transaction: a failure rolls the
whole import back like any other statement (G-rows of the catalogue: no half-written import).
Columns a caller does not give get their Python default (a scalar once, a callable per row),
or NULL, so a column added to a model later is filled like the ORM would, or fails loudly.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Enum,
    String,
    Table,
    any_,
    bindparam,
    func,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect

from ..extensions import db

Row = tuple[Any, ...]


def connection() -> Connection:
    """The session's connection, in its transaction."""
    return db.session.connection()


def is_postgresql() -> bool:
    return connection().dialect.name == "postgresql"


def among(column: Any, values: Collection[str]) -> ColumnElement[bool]:
    """``column IN values`` for a thousand strings, as one parameter whatever their number.

    An ``IN`` list costs a placeholder per value: SQLAlchemy coerces and renders each one and
    the database parses a new statement text whenever the count changes. PostgreSQL takes one
    array (``= ANY``), SQLite one JSON array (``IN (SELECT value FROM json_each(?))``, JSON
    being built into SQLite since 3.38; older builds get the plain list).
    """
    if is_postgresql():
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    if sqlite3.sqlite_version_info < (3, 38):
        return column.in_(values)
    listed = func.json_each(bindparam(None, json.dumps(list(values)), type_=String))
    return column.in_(select(listed.table_valued("value").c.value))


class BulkInsert:
    """Insert rows into ``table``: ``columns`` vary per row, ``constants`` are per call.

    Rows are tuples in the order of ``columns``, holding plain values; enum members are
    accepted in enum columns. ``conflict`` names the unique columns whose duplicates are
    skipped (``ON CONFLICT (...) DO NOTHING``); without it, PostgreSQL uses COPY.
    """

    def __init__(
        self,
        table: Table,
        columns: Sequence[str],
        constants: Sequence[str] = (),
        *,
        conflict: Sequence[str] = (),
    ) -> None:
        self.table = table
        self.columns = tuple(columns)
        self.constants = tuple(constants)
        self.conflict = tuple(conflict)
        given = set(self.columns) | set(self.constants)
        #: Columns left to their Python default: (name, value or callable).
        self.defaults = [
            (column.name, column.default)
            for column in table.columns
            if column.name not in given and column.default is not None
        ]

    def execute(
        self,
        rows: Sequence[Row],
        constants: dict[str, Any] | None = None,
        extra: dict[str, Sequence[Any]] | None = None,
    ) -> None:
        """Insert ``rows``, with ``constants`` (Python values) in every one of them and the
        ``extra`` columns' values (one per row, as stored) alongside."""
        if not rows:
            return
        bound = connection()
        dialect = bound.dialect
        count = len(rows)
        # Built column by column: converting, repeating and transposing run in C that way.
        names = list(self.columns)
        columns = [self._stored(name, values, dialect) for name, values in
                   zip(self.columns, zip(*rows, strict=True), strict=True)]  # fmt: skip
        for name, value in (constants or {}).items():
            names.append(name)
            columns.append([_db_value(self.table.c[name], value, dialect)] * count)
        for name, values in (extra or {}).items():
            names.append(name)
            columns.append(values)
        for name, default in self.defaults:
            if name in names:
                continue
            names.append(name)
            column = self.table.c[name]
            if default.is_scalar:
                columns.append([_db_value(column, default.arg, dialect)] * count)
            elif default.is_callable:
                columns.append([_db_value(column, default.arg(None), dialect) for _ in rows])
            else:  # a SQL expression or a sequence: no table written here has one
                raise TypeError(f"{self.table.name}.{name}: unsupported default for bulk insert")
        if dialect.name == "postgresql":
            if self.conflict:
                self._unnest(bound, names, columns)
            else:
                self._copy(bound, names, zip(*columns, strict=True))
            return
        self._sqlite(bound, names, columns)

    def _stored(self, name: str, values: Sequence[Any], dialect: Dialect) -> Sequence[Any]:
        """A column's values as stored: enum members become their strings, through a memo."""
        column = self.table.c[name]
        if not isinstance(column.type, Enum) or column.type.enum_class is None:
            return values
        memo = {None: None, **{member: _db_value(column, member, dialect)
                               for member in column.type.enum_class}}  # fmt: skip
        return list(map(memo.__getitem__, values))

    def _sqlite(self, bound: Connection, names: list[str], columns: list[Sequence[Any]]) -> None:
        statement = insert(self.table)
        if self.conflict:
            statement = sqlite.insert(self.table).on_conflict_do_nothing(
                index_elements=list(self.conflict)
            )
        compiled = statement.compile(dialect=bound.dialect, column_keys=names)
        ordered = [columns[names.index(key)] for key in compiled.positiontup or ()]
        if len(ordered) != len(names):
            raise RuntimeError(f"{self.table.name}: the compiled INSERT does not take every column")
        bound.exec_driver_sql(compiled.string, list(zip(*ordered, strict=True)))

    def _copy(self, bound: Connection, names: Sequence[str], rows: Iterable[Row]) -> None:
        raw = bound.connection.driver_connection
        columns = ", ".join(_quoted(bound, name) for name in names)
        table = _quoted(bound, self.table.name)
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def _unnest(
        self, bound: Connection, names: Sequence[str], columns: list[Sequence[Any]]
    ) -> None:
        # One array per column, cast to the column's type, so NULLs and strings type right.
        arrays = ", ".join(
            f"%s::{self.table.c[name].type.compile(dialect=bound.dialect)}[]" for name in names
        )
        quoted = ", ".join(_quoted(bound, name) for name in names)
        conflict = ", ".join(_quoted(bound, name) for name in self.conflict)
        # Identifiers come from the model's Table, quoted by the dialect; values are bound.
        table = _quoted(bound, self.table.name)
        sql = f"INSERT INTO {table} ({quoted}) SELECT * FROM unnest({arrays}) "  # noqa: S608
        sql += f"ON CONFLICT ({conflict}) DO NOTHING"
        bound.exec_driver_sql(sql, tuple(list(values) for values in columns))


def _db_value(column: Column[Any], value: Any, dialect: Dialect) -> Any:
    """``value`` as the column's type would send it to the database."""
    process = column.type._cached_bind_processor(dialect)
    return process(value) if process is not None else value


def _quoted(bound: Connection, name: str) -> str:
    return bound.dialect.identifier_preparer.quote(name)

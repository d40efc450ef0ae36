"""Writing and finding thousands of rows per statement, in each database's fastest way.

An import writes two rows for each line of a contact file (the contact and its report row)
and looks up every address three times. Through the ORM, and even through Core's
``executemany``, SQLAlchemy spends more time on each row than the database does: parameter
processing, defaults and type conversion for every value of every row, and on PostgreSQL one
Bind/Execute round per row. So, for these bulk statements only:

* Values that are the same for a whole chunk (the batch id, enums, timestamps, column
  defaults) are turned into their database form once, by the column's own type; the other
  values are plain ``str``/``int``/``None``, and enum columns go through a memo.
* SQLite gets the INSERT compiled from the table and one DBAPI ``executemany`` of tuples.
* PostgreSQL gets ``COPY ... FROM STDIN``. Where a row may conflict with an existing one, the
  varying columns are copied into a temporary table and moved with one ``INSERT ... SELECT
  ... ON CONFLICT DO NOTHING RETURNING``, the constant ones added there as parameters.
* Lookups take one JSON parameter whatever the number of values (:func:`among`).

Everything runs on the session's own connection, inside its transaction: a failure rolls the
whole import back like any other statement (G-rows of the catalogue: no half-written import).
Columns a caller does not give get their scalar Python default, or NULL; one with a per-row
Python default (a random id, a clock) must be given, or the insert refuses to run. So a column
added to a model later is filled like the ORM would fill it, or fails loudly in the tests.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    Enum,
    String,
    Table,
    bindparam,
    cast,
    func,
    insert,
    select,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Dialect

from ..extensions import db

Row = tuple[Any, ...]

#: json_each is built into SQLite from 3.38; older builds get a plain IN list.
_SQLITE_JSON = sqlite3.sqlite_version_info >= (3, 38)


def connection() -> Connection:
    """The session's connection, in its transaction."""
    return db.session.connection()


def dialect_name() -> str:
    return connection().dialect.name


@contextmanager
def tuned_for_bulk(sqlite_cache_kib: int) -> Iterator[None]:
    """Settings of the session's connection while a bulk write runs in its transaction.

    SQLite: a page cache of ``sqlite_cache_kib`` KiB instead of the default 2 MB. An import
    inserts into the unique indexes of ``contact`` (the address, a random ``public_id``) in
    random order, and once they outgrow the cache each insert reads pages back. The cache
    grows only as pages are used, and the previous size is set back before the connection can
    return to the pool. Nothing about durability changes: dirty pages go to the WAL at the
    commit, as before.

    PostgreSQL: no server-side prepared statements from psycopg on this connection (its
    ``prepare_threshold``, set back afterwards), so each lookup is planned for its own chunk.
    psycopg prepares a statement run five times, and PostgreSQL may then keep a generic plan
    made while the import's tables were small: a hash join over the whole ``contact`` table,
    repeated for every chunk of a long file (the existing-contacts lookup went from 9 us per
    row at 100,000 rows to 31 us at 300,000). Planning a lookup costs well under a
    millisecond. ``plan_cache_mode = force_custom_plan`` would do it too, but it also makes
    PostgreSQL plan its foreign-key checks again for every row inserted.
    """
    bound = connection()
    if bound.dialect.name == "postgresql":
        driver = bound.connection.driver_connection
        previous = driver.prepare_threshold
        driver.prepare_threshold = None
        try:
            yield
        finally:
            driver.prepare_threshold = previous
        return
    if bound.dialect.name != "sqlite":
        yield
        return
    raw = bound.connection.dbapi_connection
    assert raw is not None
    previous = int(raw.execute("PRAGMA cache_size").fetchone()[0])
    raw.execute(f"PRAGMA cache_size = {-int(sqlite_cache_kib)}")
    try:
        yield
    finally:
        with suppress(sqlite3.Error):  # a broken connection is thrown away anyway
            raw.execute(f"PRAGMA cache_size = {previous}")


def among(column: Any, name: str, dialect: str) -> ColumnElement[bool]:
    """``column IN (:name)`` for thousands of strings, as one parameter whatever their number.

    An ``IN`` list costs a placeholder per value: SQLAlchemy coerces and renders each one and
    the database parses a new statement text whenever the count changes. Here the values
    travel as one JSON array, unpacked by the database (``json_each`` in SQLite,
    ``json_array_elements_text`` in PostgreSQL): encoded in C on our side, where psycopg
    dumps a Python list for ``= ANY(%s)`` element by element in Python (2 to 3 us each). Give
    the parameter's value with :func:`listed`. A statement built with this is kept and run
    again for every chunk.
    """
    if dialect == "postgresql":
        unpacked = func.json_array_elements_text(cast(bindparam(name, type_=String), JSON))
    elif _SQLITE_JSON:
        unpacked = func.json_each(bindparam(name, type_=String))
    else:
        return column.in_(bindparam(name, expanding=True))
    return column.in_(select(unpacked.table_valued("value").c.value))


def listed(values: Collection[str], dialect: str) -> Any:
    """The value of an :func:`among` parameter."""
    if dialect == "sqlite" and not _SQLITE_JSON:
        return list(values)
    return json.dumps(list(values))


class BulkInsert:
    """Insert rows into ``table``; ``columns`` are the values that vary per row.

    Rows are tuples in the order of ``columns``, holding plain values; enum members (or their
    values) are accepted in enum columns. ``conflict`` names the unique columns whose
    duplicates are skipped (``ON CONFLICT (...) DO NOTHING``); ``returning`` the columns
    given back for the inserted rows where the database does that in the same statement.
    """

    def __init__(
        self,
        table: Table,
        columns: Sequence[str],
        *,
        conflict: Sequence[str] = (),
        returning: Sequence[str] = (),
    ) -> None:
        self.table = table
        self.columns = tuple(columns)
        self.conflict = tuple(conflict)
        self.returning = tuple(returning)
        self._compiled: dict[tuple[str, ...], tuple[str, list[int]]] = {}

    def execute(
        self, rows: Sequence[Row], constants: dict[str, Any], bound: Connection | None = None
    ) -> list[Row] | None:
        """Insert ``rows`` with ``constants`` (Python values) in every one of them.

        Returns the ``returning`` columns of the rows inserted on PostgreSQL, None on SQLite
        (whose ``executemany`` returns nothing). ``bound`` is the session's connection, given
        by a caller on another thread (where ``db.session`` is another session); by default
        it is looked up.
        """
        if not rows:
            return [] if self.returning else None
        if bound is None:
            bound = connection()
        dialect = bound.dialect
        varying = [self._stored(name, values, dialect) for name, values in
                   zip(self.columns, zip(*rows, strict=True), strict=True)]  # fmt: skip
        fixed = self._fixed(constants, dialect)
        if dialect.name == "postgresql":
            if self.conflict:
                return self._copy_then_move(bound, varying, fixed)
            names = [*self.columns, *fixed]
            count = len(rows)
            columns = [*varying, *([value] * count for value in fixed.values())]
            self._copy(bound, self.table.name, names, zip(*columns, strict=True))
            return None
        self._executemany(bound, varying, fixed, len(rows))
        return None

    def _fixed(self, constants: dict[str, Any], dialect: Dialect) -> dict[str, Any]:
        """The values common to all rows, as stored: the constants and the column defaults."""
        fixed = {name: _db_value(self.table.c[name], value, dialect)
                 for name, value in constants.items()}  # fmt: skip
        for column in self.table.columns:
            default = column.default
            if column.name in fixed or column.name in self.columns or default is None:
                continue
            if default.is_scalar:
                fixed[column.name] = _db_value(column, default.arg, dialect)
            else:  # a per-row callable (a random id, a clock) must be given by the caller
                raise TypeError(f"{self.table.name}.{column.name}: give its value for each row")
        return fixed

    def _stored(self, name: str, values: Sequence[Any], dialect: Dialect) -> Sequence[Any]:
        """A column's values as stored: enum members become their strings, through a memo."""
        column = self.table.c[name]
        if not isinstance(column.type, Enum) or column.type.enum_class is None:
            return values
        memo: dict[Any, Any] = {None: None}
        for member in column.type.enum_class:
            memo[member] = memo[member.value] = _db_value(column, member, dialect)
        return list(map(memo.__getitem__, values))

    def _executemany(
        self, bound: Connection, varying: list[Sequence[Any]], fixed: dict[str, Any], count: int
    ) -> None:
        names = (*self.columns, *fixed)
        columns = [*varying, *([value] * count for value in fixed.values())]
        sql, order = self._sqlite_statement(bound.dialect, names)
        bound.exec_driver_sql(sql, list(zip(*(columns[i] for i in order), strict=True)))

    def _sqlite_statement(self, dialect: Dialect, names: tuple[str, ...]) -> tuple[str, list[int]]:
        """The INSERT for these columns, compiled once, and the order it takes them in."""
        if names not in self._compiled:
            statement = insert(self.table)
            if self.conflict:
                statement = sqlite.insert(self.table).on_conflict_do_nothing(
                    index_elements=list(self.conflict)
                )
            compiled = statement.compile(dialect=dialect, column_keys=list(names))
            order = [names.index(key) for key in compiled.positiontup or ()]
            if sorted(order) != list(range(len(names))):
                raise RuntimeError(f"{self.table.name}: the INSERT does not take every column")
            self._compiled[names] = (compiled.string, order)
        return self._compiled[names]

    def _copy_then_move(
        self, bound: Connection, varying: list[Sequence[Any]], fixed: dict[str, Any]
    ) -> list[Row]:
        # COPY cannot skip conflicts, so the rows wait in a temporary table (dropped at the
        # commit or rollback of the import) and move in one statement. The table is made by
        # the first chunk and emptied of the previous chunk's rows in the same round trip
        # (two statements without parameters: psycopg sends them as one simple query).
        quote = bound.dialect.identifier_preparer.quote
        table, staging = quote(self.table.name), quote(f"_bulk_{self.table.name}")
        columns = ", ".join(quote(name) for name in self.columns)
        with bound.connection.driver_connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} ON COMMIT DROP AS "  # noqa: S608
                f"SELECT {columns} FROM {table} WITH NO DATA; TRUNCATE {staging}"
            )
        self._copy(bound, f"_bulk_{self.table.name}", self.columns, zip(*varying, strict=True))
        # Identifiers come from the model's Table, quoted by the dialect; values are bound.
        casts = ", ".join(
            f"%s::{self.table.c[name].type.compile(dialect=bound.dialect)}" for name in fixed
        )
        targets = ", ".join(quote(name) for name in (*self.columns, *fixed))
        conflict = ", ".join(quote(name) for name in self.conflict)
        returning = ", ".join(quote(name) for name in self.returning)
        sql = f"INSERT INTO {table} ({targets}) SELECT {columns}, {casts} FROM {staging} "  # noqa: S608
        sql += f"ON CONFLICT ({conflict}) DO NOTHING"
        if returning:
            sql += f" RETURNING {returning}"
        # psycopg's own cursor: its rows are tuples already, where SQLAlchemy's result would
        # make a Row of each returned contact and then a tuple again.
        with bound.connection.driver_connection.cursor() as cursor:
            cursor.execute(sql, tuple(fixed.values()))
            return cursor.fetchall() if returning else []

    @staticmethod
    def _copy(bound: Connection, table: str, names: Sequence[str], rows: Iterable[Row]) -> None:
        quote = bound.dialect.identifier_preparer.quote
        columns = ", ".join(quote(name) for name in names)
        raw = bound.connection.driver_connection
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY {quote(table)} ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)


def _db_value(column: Column[Any], value: Any, dialect: Dialect) -> Any:
    """``value`` as the column's type would send it to the database."""
    process = column.type._cached_bind_processor(dialect)
    return process(value) if process is not None else value

"""The busiest statements, run on SQLite without SQLAlchemy's per-execution work.

On SQLite a statement of the confirmation or the one-click unsubscribe takes SQLite 5 to 10 µs;
SQLAlchemy's work around it (finding the compiled form, building and processing the
parameters, applying Python defaults, setting up the result) takes about 25 µs more, and a
confirmation runs eight of them inside the database's one write lock. :class:`Prepared` does
that work once per statement and column set instead, with SQLAlchemy's own pieces (the
compiled SQL and its parameter order, each type's bind and result processors, each column's
Python default), and runs the SQL on the DBAPI cursor of the caller's connection, in its
transaction; an error is raised as the exception SQLAlchemy would raise. (Even
``exec_driver_sql`` costs 10 µs a statement more.) What these statements do not get is
SQLAlchemy's engine events and echo logging. Other databases get the ordinary
``Connection.execute`` (PostgreSQL's busiest writes are CTEs, see ``leaving.uses_ctes``).

The rows written are the ones ``Connection.execute`` writes: tests/test_fast_paths.py does the
same things with the fast path on and off (``ENABLED``) and compares every row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Executable
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any] | None

#: Tests turn this off to compare with ``Connection.execute``.
ENABLED = True


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    #: (parameter name, bind processor) in the order of the SQL's ``?``.
    binds: tuple[tuple[str, Processor], ...]
    #: Values the statement carries itself (literals) and Python column defaults to call.
    fixed: Mapping[str, Any]
    defaults: tuple[tuple[str, Callable[[], Any]], ...]
    #: One result processor per returned column (an empty tuple: no rows come back).
    results: tuple[Processor, ...]


class Prepared:
    """A Core statement whose SQLite form is worked out once per set of parameter names."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._plans: dict[tuple[int, frozenset[str]], _Plan] = {}

    def execute(
        self, connection: Connection, parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    ) -> list[tuple[Any, ...]]:
        """Run the statement with one set of parameters or many; the rows it returns."""
        many = not isinstance(parameters, Mapping)
        if connection.dialect.name != "sqlite" or not ENABLED:
            result = connection.execute(self.statement, parameters)
            return [tuple(row) for row in result] if result.returns_rows else []
        rows: Sequence[Mapping[str, Any]] = parameters if many else [parameters]  # type: ignore[assignment]
        if not rows:
            return []
        plan = self._plan(connection, frozenset(rows[0]))
        arguments = [self._arguments(plan, row) for row in rows]
        # The connection's own DBAPI connection, in the transaction SQLAlchemy began on it.
        cursor = connection.connection.driver_connection.cursor()
        try:
            if many:
                cursor.executemany(plan.sql, arguments)
            else:
                cursor.execute(plan.sql, arguments[0])
            found = cursor.fetchall() if plan.results else []
        except sqlite3.Error as error:
            # The exception SQLAlchemy would have raised (IntegrityError, OperationalError…).
            raise DBAPIError.instance(plan.sql, arguments, error, sqlite3.Error) from error
        finally:
            cursor.close()
        return [
            tuple(p(value) if p else value for p, value in zip(plan.results, row, strict=True))
            for row in found
        ]

    @staticmethod
    def _arguments(plan: _Plan, row: Mapping[str, Any]) -> tuple[Any, ...]:
        values = {**plan.fixed, **row}
        for name, default in plan.defaults:
            if name not in row:
                values[name] = default()
        return tuple(p(values[name]) if p else values[name] for name, p in plan.binds)

    def _plan(self, connection: Connection, names: frozenset[str]) -> _Plan:
        dialect = connection.dialect
        key = (id(dialect), names)
        plan = self._plans.get(key)
        if plan is None:
            compiled = self.statement.compile(dialect=dialect, column_keys=sorted(names))
            assert isinstance(compiled, SQLCompiler)
            plan = self._plans[key] = _compile(compiled, dialect, names)
        return plan


def _compile(compiled: SQLCompiler, dialect: Any, names: frozenset[str]) -> _Plan:
    if compiled.positiontup is None:
        raise ValueError("Prepared needs a dialect with positional parameters (SQLite's)")
    if any(bind.expanding for bind in compiled.binds.values()):
        raise ValueError("Prepared takes no expanding IN parameters")
    binds = tuple(
        (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
        for name in compiled.positiontup
    )
    fixed = {
        name: bind.value
        for name, bind in compiled.binds.items()
        if name not in names and not bind.required and bind.callable is None
    }
    # Python defaults of INSERT and UPDATE (a clock, a random id, a constant), called per row
    # as SQLAlchemy would for a column the parameters leave out.
    defaults: list[tuple[str, Callable[[], Any]]] = []
    for column in compiled.insert_prefetch:
        defaults.append((column.key, _generator(column, column.default)))
    for column in compiled.update_prefetch:
        defaults.append((column.key, _generator(column, column.onupdate)))
    results = tuple(
        entry[3].dialect_impl(dialect).result_processor(dialect, None)
        for entry in compiled._result_columns  # (key, name, objects, type) per column
    )
    return _Plan(compiled.string, binds, fixed, tuple(defaults), results)


def _generator(column: Any, default: Any) -> Callable[[], Any]:
    if default is not None and default.is_scalar:
        value = default.arg
        return lambda: value
    if default is not None and default.is_callable:
        function = default.arg  # SQLAlchemy's wrapper takes the execution context
        return lambda: function(None)
    raise ValueError(f"{column} has a default that Prepared cannot apply")

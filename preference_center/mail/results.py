"""Recording each outbox row's result: one UPDATE, only while the worker's lease holds it."""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

from sqlalchemy import Connection, Dialect, Update, bindparam, update

from ..extensions import db
from ..models import OutboxMessage

_OUTBOX = OutboxMessage.__table__


@cache
def finish_statement(columns: tuple[str, ...]) -> Update:
    """``UPDATE outbox_message SET <columns> WHERE id = :row_id AND locked_by = :worker``.

    Built once per set of columns and executed with parameters: constructing and caching a
    new statement for every message cost more than the UPDATE itself (docs/benchmarks.md).
    """
    return (
        update(_OUTBOX)
        .where(_OUTBOX.c.id == bindparam("row_id"), _OUTBOX.c.locked_by == bindparam("worker"))
        .values(
            locked_by=None,
            locked_until=None,
            **{column: bindparam(f"new_{column}") for column in columns},
        )
    )


def finish(row_id: int, worker: str, connection: Connection | None = None, **values: Any) -> None:
    """Record the result of one row, in its own transaction, only if our lease still holds it.

    Each row is committed on its own so that a crash repeats at most the message in flight
    (catalogue E4). ``connection`` is the batch's own connection (see ``outbox.deliver``); without
    one the session's is used.
    """
    parameters = {"row_id": row_id, "worker": worker}
    parameters.update({f"new_{column}": value for column, value in values.items()})
    columns = tuple(sorted(values))
    if connection is None:
        db.session.execute(finish_statement(columns), parameters)
        db.session.commit()
    else:
        DriverStatement.of(connection.dialect, columns).execute(connection, parameters)
        connection.commit()


class DriverStatement:
    """A finish statement compiled once per database dialect, run with ``exec_driver_sql``.

    Even a cached Core statement costs some 60 µs per execution in SQLAlchemy's compile-cache
    lookup and parameter handling, more than the driver's own work on a one-row UPDATE, once
    per message (docs/benchmarks.md). Here the SQL is compiled once; each execution applies
    the same type conversions SQLAlchemy would (``TypeEngine.bind_processor``: the enum's
    value, naive UTC datetimes) and puts the parameters in the driver's order.
    """

    def __init__(self, dialect: Dialect, columns: tuple[str, ...]) -> None:
        self.compiled = finish_statement(columns).compile(dialect=dialect)
        self.sql = self.compiled.string
        self.order = tuple(self.compiled.positiontup or ()) if dialect.positional else None
        self.processors = [
            (name, processor)
            for name, bind in self.compiled.binds.items()
            if (processor := bind.type.bind_processor(dialect)) is not None
        ]

    @staticmethod
    @lru_cache(maxsize=64)
    def of(dialect: Dialect, columns: tuple[str, ...]) -> DriverStatement:
        return DriverStatement(dialect, columns)

    def execute(self, connection: Connection, parameters: dict[str, Any]) -> None:
        values = self.compiled.construct_params(parameters)
        for name, processor in self.processors:
            if name in values:
                values[name] = processor(values[name])
        if self.order is None:
            connection.exec_driver_sql(self.sql, values)
        else:
            connection.exec_driver_sql(self.sql, tuple(values[name] for name in self.order))

"""Engine tuning that depends on the database in use.

SQLite is the embedded default for development and small installations. It allows one writer
at a time; WAL lets readers go on while a writer works, and the busy timeout makes a second
writer wait for the lock instead of failing with "database is locked" (catalogue F6).
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .extensions import db


def tune_engines(app: Flask) -> None:
    """Install per-connection settings on the app's engines (called once per app)."""
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "sqlite":
        timeout = float(app.config["SQLITE_BUSY_TIMEOUT"])
        event.listen(engine, "connect", _sqlite_pragmas(timeout))


def _sqlite_pragmas(timeout: float) -> Any:
    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        if _is_file(dbapi_connection):
            cursor.execute("PRAGMA journal_mode=WAL")
            # Durable at checkpoints; a power cut can lose the last transactions, never
            # corrupt the file. PostgreSQL is the choice where that matters.
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return on_connect


def _is_file(dbapi_connection: Any) -> bool:
    rows = dbapi_connection.execute("PRAGMA database_list").fetchall()
    return any(row[2] for row in rows)  # an in-memory database has an empty file name


def engine_of(app: Flask) -> Engine:
    with app.app_context():
        return db.engine

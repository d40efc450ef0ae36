"""Engine tuning that depends on the database in use.

SQLite is the embedded default for development and small installations. It allows one writer
at a time; WAL lets readers go on while a writer works, and the busy timeout makes a second
writer wait for the lock instead of failing with "database is locked" (catalogue F6).

SQLite's busy handler waits by sleeping, 1 ms, then 2, 5, 10 and more, however soon the lock
is free again, and a write transaction of the busiest pages lasts a few tenths of a
millisecond: two web workers writing at once spent more time asleep than writing (a fifth of
the CPUs sat idle under load). So writers also queue on a file lock beside the database,
``<file>-writers`` (:class:`QueuedConnection`): a connection takes it before its first
statement that writes and gives it back when its transaction ends. Threads of one process wait
for one another on a lock of the process (woken at once); across processes, the writer next
in line looks at the file lock again every 50 to 200 µs. The queue only orders writers that SQLite serialises anyway, and
SQLite's lock stays the rule: a writer that waited ``SQLITE_BUSY_TIMEOUT`` for the queue goes
on to SQLite's busy handler as before (and fails after a second timeout), a write the queue
does not see (another program's) is handled by SQLite alone, and a process that dies lets go
of the file lock with its file descriptors.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
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
        event.listen(engine, "do_connect", _queued_connections)
        event.listen(engine, "connect", _sqlite_pragmas(timeout))


def _sqlite_pragmas(timeout: float) -> Any:
    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        path = _file_of(dbapi_connection)
        if path:
            cursor.execute("PRAGMA journal_mode=WAL")
            # Durable at checkpoints; a power cut can lose the last transactions, never
            # corrupt the file. PostgreSQL is the choice where that matters.
            cursor.execute("PRAGMA synchronous=NORMAL")
            if isinstance(dbapi_connection, QueuedConnection):
                flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
                dbapi_connection.queue_fd = os.open(f"{path}-writers", flags, 0o600)
                dbapi_connection.queue_lock = _process_queue(path)
                dbapi_connection.queue_timeout = timeout
        cursor.close()

    return on_connect


def _queued_connections(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
    cparams.setdefault("factory", QueuedConnection)


def _file_of(dbapi_connection: Any) -> str:
    """The main database's file; "" for an in-memory database."""
    rows = dbapi_connection.execute("PRAGMA database_list").fetchall()
    return next((row[2] for row in rows if row[1] == "main"), "")


def engine_of(app: Flask) -> Engine:
    with app.app_context():
        return db.engine


# --- SQLite: writers queue on a file lock (see the module docstring) ------------------------

#: Statements that never write; any other statement joins the writers' queue first.
_READS = ("SELECT", "PRAGMA", "EXPLAIN", "SAVEPOINT", "RELEASE", "ROLLBACK", "COMMIT", "BEGIN")
#: How long a waiting writer sleeps between looks at the queue: at first, and at most. A
#: write transaction of the busiest pages holds the lock for a few tenths of a millisecond.
_FIRST_WAIT, _LONGEST_WAIT = 0.00005, 0.0002


def _writes(sql: str) -> bool:
    return not sql.lstrip()[:9].upper().startswith(_READS)


_PROCESS_QUEUES: dict[str, threading.Lock] = {}
_PROCESS_QUEUES_LOCK = threading.Lock()


def _process_queue(path: str) -> threading.Lock:
    """The lock the threads of this process queue on for ``path``, one per database file."""
    with _PROCESS_QUEUES_LOCK:
        return _PROCESS_QUEUES.setdefault(path, threading.Lock())


class QueuedCursor(sqlite3.Cursor):
    """A cursor that joins its connection's writer queue before a statement that writes."""

    connection: QueuedConnection

    def execute(self, sql: str, parameters: Any = (), /) -> QueuedCursor:
        self.connection.before(sql)
        try:
            return super().execute(sql, parameters)
        finally:
            self.connection.after()

    def executemany(self, sql: str, parameters: Any, /) -> QueuedCursor:
        self.connection.before(sql)
        try:
            return super().executemany(sql, parameters)
        finally:
            self.connection.after()


class QueuedConnection(sqlite3.Connection):
    """A SQLite connection whose writers queue on ``<database>-writers`` (module docs)."""

    queue_fd: int | None = None  # set on connect, for a database in a file
    queue_lock: threading.Lock  # this process's place in the queue (_process_queue)
    queue_timeout = 0.0
    in_queue = False

    def cursor(self, factory: Any = QueuedCursor) -> Any:
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Any:
        return self.cursor().executemany(sql, parameters)

    def before(self, sql: str) -> None:
        fd = self.queue_fd
        if not self.in_queue and fd is not None and _writes(sql):
            self._join_queue(fd)

    def after(self) -> None:
        # A write outside a transaction (autocommit, or one that failed) is over already.
        if self.in_queue and not self.in_transaction:
            self._leave_queue()

    def _join_queue(self, fd: int) -> None:
        # Threads of one process wait on a lock of its own, woken the moment it is free; only
        # the one holding it looks at the file lock, so waiting threads never poll (which
        # would take the GIL from those working every few tens of microseconds).
        deadline = time.monotonic() + self.queue_timeout
        if not self.queue_lock.acquire(timeout=self.queue_timeout):
            return  # SQLite's own lock and busy timeout decide
        wait = _FIRST_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self.queue_lock.release()
                    return
                time.sleep(wait)
                wait = min(wait * 2, _LONGEST_WAIT)
            else:
                self.in_queue = True
                return

    def _transaction_over(self) -> None:
        if self.in_queue:
            self._leave_queue()

    def _leave_queue(self) -> None:
        self.in_queue = False
        try:
            if self.queue_fd is not None:
                fcntl.flock(self.queue_fd, fcntl.LOCK_UN)
        finally:
            self.queue_lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._transaction_over()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._transaction_over()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._transaction_over()
            if self.queue_fd is not None:
                os.close(self.queue_fd)
                self.queue_fd = None

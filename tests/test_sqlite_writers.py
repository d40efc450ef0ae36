"""SQLite's writers queue on a file lock beside the database (database.py, catalogue F6).

The queue must be held from a transaction's first write to its end, let go at every way a
transaction can end, never make a writer wait longer than SQLITE_BUSY_TIMEOUT before SQLite's
own lock decides, and stay out of the way of readers.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from preference_center.database import QueuedConnection
from preference_center.extensions import db


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """SQLite only: PostgreSQL has row locks and no writer queue."""
    return request.param


@pytest.fixture
def app_config() -> dict[str, Any]:
    return {"SQLITE_BUSY_TIMEOUT": 0.3}  # seconds: the give-up test waits twice this


@pytest.fixture
def engine(app: Any) -> Iterator[Any]:
    with app.app_context():
        with db.engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE queued (n INTEGER)")
        yield db.engine


def queue_is_held(engine: Any) -> bool:
    """Whether a writer holds the queue now, asked as another process would."""
    fd = os.open(f"{engine.url.database}-writers", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def test_f6_every_connection_of_a_file_database_is_queued(engine):
    with engine.connect() as connection:
        assert isinstance(connection.connection.driver_connection, QueuedConnection)
        assert connection.connection.driver_connection.queue_fd is not None


def test_f6_the_queue_is_held_from_the_first_write_to_the_commit(engine):
    with engine.connect() as connection:
        connection.execute(text("SELECT count(*) FROM queued"))
        assert not queue_is_held(engine), "a read does not queue"
        connection.execute(text("INSERT INTO queued VALUES (1)"))
        assert queue_is_held(engine)
        connection.commit()
        assert not queue_is_held(engine)


def test_f6_a_rollback_and_a_closed_connection_let_go_of_the_queue(engine):
    with engine.connect() as connection:
        connection.execute(text("INSERT INTO queued VALUES (1)"))
        connection.rollback()
        assert not queue_is_held(engine)
        connection.execute(text("INSERT INTO queued VALUES (2)"))
        assert queue_is_held(engine)
    assert not queue_is_held(engine), "returning the connection to the pool rolls back"
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM queued")).scalar() == 0


def test_f6_an_autocommitted_write_leaves_the_queue_at_once(engine):
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("INSERT INTO queued VALUES (1)"))
        assert not queue_is_held(engine)


def test_f6_a_second_writer_waits_for_the_first_and_then_writes(engine):
    done = threading.Event()
    errors: list[BaseException] = []

    def second_writer() -> None:
        try:
            with engine.connect() as connection:
                connection.execute(text("INSERT INTO queued VALUES (2)"))
                connection.commit()
        except BaseException as exc:  # the assertion below shows it
            errors.append(exc)
        finally:
            done.set()

    with engine.connect() as first:
        first.execute(text("INSERT INTO queued VALUES (1)"))
        thread = threading.Thread(target=second_writer)
        thread.start()
        assert not done.wait(0.1), "the second writer went on while the first held the lock"
        first.commit()
    thread.join(timeout=10)
    assert done.is_set() and errors == []
    with engine.connect() as connection:
        assert connection.execute(text("SELECT n FROM queued ORDER BY n")).scalars().all() == [
            1,
            2,
        ]


def test_f6_a_writer_held_up_past_the_timeout_fails_as_before_and_changes_nothing(engine):
    """The queue waits SQLITE_BUSY_TIMEOUT, then SQLite's busy handler as many seconds, then
    the usual "database is locked"; the first writer's work is untouched."""
    failures: list[BaseException] = []

    def second_writer() -> None:
        with engine.connect() as connection:
            try:
                connection.execute(text("INSERT INTO queued VALUES (2)"))
            except OperationalError as exc:
                failures.append(exc)

    with engine.connect() as first:
        first.execute(text("INSERT INTO queued VALUES (1)"))
        thread = threading.Thread(target=second_writer)
        thread.start()
        thread.join(timeout=10)
        assert not thread.is_alive()
        assert len(failures) == 1 and "locked" in str(failures[0])
        first.commit()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT n FROM queued")).scalars().all() == [1]


def test_f6_a_write_through_the_connection_s_own_shortcuts_queues_too(engine):
    """``execute`` and ``executemany`` on the DBAPI connection itself go through the queue."""
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        raw.executemany("INSERT INTO queued VALUES (?)", [(1,), (2,)])
        assert queue_is_held(engine)
        raw.commit()
        assert not queue_is_held(engine)
        raw.execute("INSERT INTO queued VALUES (3)")
        assert queue_is_held(engine)
        raw.rollback()
        assert not queue_is_held(engine)

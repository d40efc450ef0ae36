"""The Alembic migrations build exactly the models' schema, and every step can be undone.

Each test that touches a database runs on an empty SQLite file and on a throwaway PostgreSQL
database (created for the test and dropped after; skipped with a reason when TEST_DATABASE_URL
is not set, a failure under REQUIRE_POSTGRES=1). Unlike the ``app`` fixture, nothing here calls
``db.create_all()``: the schema comes from ``flask db upgrade`` alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from pprint import pformat
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from conftest import _base_config, create_throwaway_database, drop_database, postgres_or_skip
from flask import Flask, current_app
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from preference_center import create_app
from preference_center.extensions import db

#: The table Alembic keeps its position in; the only table allowed after a full downgrade.
VERSION_TABLE = "alembic_version"


# --- fixtures and helpers -----------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database with no tables at all, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
        return
    admin_url = postgres_or_skip()
    url = create_throwaway_database(admin_url)
    yield url
    drop_database(admin_url, url)


@pytest.fixture
def migration_app(empty_database_url: str) -> Iterator[Flask]:
    """An app on the empty database, with an application context pushed."""
    app = create_app(_base_config(empty_database_url, port=1))
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def schema_diff() -> list[Any]:
    """What autogenerate would write to turn the database into the models; [] when equal."""
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def table_names() -> set[str]:
    with db.engine.connect() as connection:
        return set(inspect(connection).get_table_names())


def schema_snapshot() -> dict[str, Any]:
    """Tables, columns, keys and indexes as the database reports them, for before/after checks."""
    with db.engine.connect() as connection:
        inspector = inspect(connection)
        snapshot: dict[str, Any] = {}
        for table in sorted(inspector.get_table_names()):
            if table == VERSION_TABLE:
                continue
            snapshot[table] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
                ],
                "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
                "foreign keys": sorted(
                    (tuple(fk["constrained_columns"]), fk["referred_table"])
                    for fk in inspector.get_foreign_keys(table)
                ),
                "unique": sorted(
                    tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)
                ),
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                    for i in inspector.get_indexes(table)
                ),
            }
        return snapshot


def script_directory() -> ScriptDirectory:
    """The migration scripts, read through the app's Flask-Migrate configuration."""
    config = current_app.extensions["migrate"].migrate.get_config()
    return ScriptDirectory.from_config(config)


def revisions_oldest_first() -> list[Script]:
    return list(reversed(list(script_directory().walk_revisions("base", "heads"))))


def previous(revision: Script) -> str:
    """The downgrade target that undoes ``revision`` alone ("base" for the first one)."""
    down = revision.down_revision
    if down is None:
        return "base"
    if isinstance(down, str):
        return down
    # A merge point: going back to one parent also undoes the other parent's own branch,
    # which the walk then upgrades again. Every downgrade still runs at least once.
    return down[0]


# --- tests --------------------------------------------------------------------------------


def test_upgrade_on_an_empty_database_creates_exactly_the_models(migration_app: Flask) -> None:
    assert table_names() == set(), "the test database was not empty"

    upgrade()

    diff = schema_diff()
    assert diff == [], (
        "the migrations and the models disagree; write a migration "
        "(`flask db migrate -m ...`) for these differences:\n" + pformat(diff)
    )


def test_downgrade_to_base_removes_every_table_and_upgrading_again_works(
    migration_app: Flask,
) -> None:
    upgrade()
    models = schema_snapshot()

    downgrade(revision="base")

    assert table_names() <= {VERSION_TABLE}, (
        f"tables left after downgrading to base: {sorted(table_names() - {VERSION_TABLE})}"
    )
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as connection:
            inspector = inspect(connection)
            assert inspector.get_enums() == [], "enum types left after downgrading to base"
            assert inspector.get_sequence_names() == [], "sequences left after downgrading"

    upgrade()

    assert schema_diff() == [], pformat(schema_diff())
    assert schema_snapshot() == models


def test_every_migration_has_a_downgrade_that_undoes_its_upgrade(migration_app: Flask) -> None:
    revisions = revisions_oldest_first()
    assert revisions, "no migration scripts found"

    for revision in revisions:
        before = schema_snapshot()
        upgrade(revision=revision.revision)
        downgrade(revision=previous(revision))
        after = schema_snapshot()
        assert after == before, (
            f"downgrading {revision.revision} ({revision.doc}) did not restore the schema "
            f"it started from:\nbefore: {pformat(before)}\nafter: {pformat(after)}"
        )
        upgrade(revision=revision.revision)

    assert schema_diff() == [], pformat(schema_diff())


def test_the_migrations_have_a_single_head(tmp_path: Path) -> None:
    # Reads the scripts only, so one backend is enough and the database is never opened.
    app = create_app(_base_config(f"sqlite:///{tmp_path / 'unused.sqlite3'}", port=1))
    with app.app_context():
        heads = script_directory().get_heads()
    assert len(heads) == 1, (
        f"the migrations have {len(heads)} heads {heads}: two branches were written from the "
        "same parent; join them with `flask db merge heads -m ...` or rebase one onto the other"
    )

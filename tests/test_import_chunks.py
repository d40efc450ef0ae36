"""Importing in chunks with bulk statements (catalogue rows G7, G8, G13, G14, G16, G17, F4).

The import checks and writes a file a chunk at a time (services/import_chunks.py) with one
statement per table and lookup (services/bulk.py). These tests pin what must not depend on
that: the report line by line whatever the chunk size, what is kept in memory, the digests
under every key, the values stored for each contact, and the SQLite setting an import changes
for its own duration.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from test_imports import EVENT, run

from preference_center import readers, suppression
from preference_center.extensions import db
from preference_center.models import (
    Contact,
    ContactSource,
    ImportOutcome,
    ImportRow,
    SuppressionReason,
)
from preference_center.services import imports

CHUNKED = (
    b"email;voornaam\n"
    b"jan@example.be;Jan\nerased@example.be;E\npending@example.be;P\nsubscribed@example.be;S\n"
    b"bad\nmarie@example.be;Marie\nJAN@example.be;Jan\nerased@EXAMPLE.be;E\n"
    b"Pending@example.be;P\nsubscribed@example.be;S\nmarie@example.be;M\ninfo@example.be;I\n"
    b"bad\njan@example.be;J\nInfo@Example.be;I\n"
)


def chunked_report(app, client, smtp, chunk):
    """Import CHUNKED with chunks of ``chunk`` rows: (counts, outcome per line, contacts)."""
    from builders import seed_topics, subscribe

    seed_topics(app)
    subscribe(app, client, smtp, "subscribed@example.be")
    with app.app_context():
        suppression.add("erased@example.be", SuppressionReason.ERASED)
        db.session.commit()
    run(app, b"email\npending@example.be\n")  # a contact still waiting for its permission
    previous = imports.CHUNK, imports.POSTGRESQL_CHUNK
    imports.CHUNK = imports.POSTGRESQL_CHUNK = chunk
    try:
        counts, _outcomes, batch_id = run(app, CHUNKED)
    finally:
        imports.CHUNK, imports.POSTGRESQL_CHUNK = previous
    with app.app_context():
        rows = db.session.execute(
            select(ImportRow.line, ImportRow.outcome, ImportRow.contact_id)
            .where(ImportRow.batch_id == batch_id)
            .order_by(ImportRow.line)
        ).all()
        emails = dict(db.session.execute(select(Contact.id, Contact.email)).all())
    return counts, [(line, outcome, emails.get(contact)) for line, outcome, contact in rows]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5])
def test_g8_repeats_across_chunks_are_duplicates_exactly_as_within_one_chunk(
    app, client, smtp, chunk
):
    counts, report = chunked_report(app, client, smtp, chunk)
    assert counts == {"new": 4, "duplicate": 7, "suppressed": 1, "already-subscribed": 1,
                      "invalid": 2, "role": 2}  # fmt: skip
    new, dup = ImportOutcome.NEW, ImportOutcome.DUPLICATE
    assert report == [
        (2, new, "jan@example.be"), (3, ImportOutcome.SUPPRESSED, None),
        (4, new, "pending@example.be"), (5, ImportOutcome.ALREADY_SUBSCRIBED, None),
        (6, ImportOutcome.INVALID, None), (7, new, "marie@example.be"), (8, dup, None),
        (9, dup, None), (10, dup, None), (11, dup, None), (12, dup, None),
        (13, new, "info@example.be"), (14, ImportOutcome.INVALID, None), (15, dup, None),
        (16, dup, None),
    ]  # fmt: skip


def test_g7_only_addresses_that_are_not_new_contacts_are_held_in_memory(app):
    from preference_center.services import import_chunks

    with app.app_context():
        suppression.add("erased@example.be", SuppressionReason.ERASED)
        batch = imports.new_batch(io.BytesIO(b"x"), filename="x.csv", provenance=EVENT, options={},
                                  language="nl", status=imports.ImportStatus.IMPORTING)  # fmt: skip
        db.session.flush()
        state = import_chunks.ImportRun(batch.id, "nl")
        rows = [readers.Row(n, f"person{n}@example.be") for n in range(2, 50)]
        for chunk in (rows[:20], [readers.Row(60, "erased@example.be"), *rows[20:]],
                      [readers.Row(70, "PERSON3@example.be")]):  # fmt: skip
            import_chunks.write_chunk(state, import_chunks.check_rows(chunk))
        assert state.counts == {"new": 48, "suppressed": 1, "duplicate": 1}
        assert state.seen == {"erased@example.be"}
        db.session.rollback()


def test_g13_bulk_digests_are_the_single_address_digests_under_every_key(app):
    app.config.update(SUPPRESSION_KEY="new-key", SUPPRESSION_KEY_FALLBACKS=["old-key"])
    addresses = ["jan@example.be", "zoë@bücher.be"]
    with app.app_context():
        found = suppression.digests(addresses)
        keys = suppression.keys()  # the module's function, current key first
        expected = {suppression.digest(a, key): a for a in addresses for key in keys}
    assert found == expected and len(found) == 4


def test_g7_the_sqlite_page_cache_is_set_back_after_an_import(app, backend):
    if backend != "sqlite":
        pytest.skip("a SQLite setting")
    from preference_center.services import bulk

    with app.app_context():
        before = db.session.connection().exec_driver_sql("PRAGMA cache_size").scalar()
        with bulk.tuned_for_bulk(4096):
            inside = db.session.connection().exec_driver_sql("PRAGMA cache_size").scalar()
        after = db.session.connection().exec_driver_sql("PRAGMA cache_size").scalar()
    assert (inside, after) == (-4096, before)


def test_g16_g17_imported_contacts_get_what_the_orm_would_give_them(app):
    import uuid

    _, _, batch_id = run(app, b"email;voornaam;taal\njan@example.be;Jan;FR\nMarie@Example.be;;\n")
    with app.app_context():
        stored = {c.email: c for c in db.session.scalars(select(Contact))}
        assert set(stored) == {"jan@example.be", "marie@example.be"}
        for contact in stored.values():
            assert uuid.UUID(contact.public_id).version == 4
            assert contact.created_at.tzinfo is not None
            assert abs(contact.updated_at - contact.created_at) < timedelta(seconds=5)
            assert (contact.hard_bounces, contact.manage_version, contact.prefs_version) == (
                0,
                1,
                1,
            )
            assert contact.source is ContactSource.IMPORT and contact.import_batch_id == batch_id
            assert contact.paused_until is None
        assert (
            stored["jan@example.be"].language == "fr"
            and stored["jan@example.be"].first_name == "Jan"
        )
        assert (
            stored["marie@example.be"].language == "nl"
            and stored["marie@example.be"].first_name is None
        )
        assert stored["marie@example.be"].email_display == "Marie@example.be"
        assert len({c.public_id for c in stored.values()}) == 2
        rows = db.session.execute(
            select(ImportRow.line, ImportRow.contact_id, ImportRow.address_kind)
            .where(ImportRow.batch_id == batch_id)
            .order_by(ImportRow.line)
        ).all()
    assert [(line, contact_id) for line, contact_id, _ in rows] == [
        (2, stored["jan@example.be"].id),
        (3, stored["marie@example.be"].id),
    ]


def test_a_bulk_insert_refuses_to_leave_out_a_column_with_a_per_row_default(app):
    from preference_center.services.bulk import BulkInsert

    contacts = BulkInsert(Contact.__table__, ("email", "email_display", "language", "source"))
    with app.app_context(), pytest.raises(TypeError, match="public_id"):
        contacts.execute([("a@example.be", "a@example.be", "nl", "import")], {})


@pytest.mark.parametrize("failing", ["contacts", "report"])
def test_g7_a_write_failing_in_a_later_chunk_leaves_nothing_of_the_import(
    app, monkeypatch, failing
):
    """On PostgreSQL the chunks are written by a helper thread while the next one is read: a
    failure there still fails the whole import, and the worker's rollback finds the helper
    done (SQLite writes in order: the same promise)."""
    from preference_center.services import import_chunks

    target = import_chunks._CONTACTS if failing == "contacts" else import_chunks._REPORT
    original = target.execute
    calls = []

    def fail_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the disk is full")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, "execute", fail_on_the_third)
    monkeypatch.setattr(imports, "CHUNK", 2)
    monkeypatch.setattr(imports, "POSTGRESQL_CHUNK", 2)
    content = b"email\n" + b"".join(b"person%d@example.be\n" % n for n in range(12))
    with app.app_context():
        batch = imports.start_upload(io.BytesIO(content), filename="x.csv", provenance=EVENT,
                                     language="nl")  # fmt: skip
        imports.queue(batch)
        batch_id = batch.id
        assert imports.run_queued() == batch_id
        db.session.expire_all()
        failed = db.session.get(imports.ImportBatch, batch_id)
        assert failed.status is imports.ImportStatus.FAILED
        assert "the disk is full" in failed.error
        assert db.session.scalar(select(func.count()).select_from(Contact)) == 0
        assert db.session.scalar(select(func.count()).select_from(ImportRow)) == 0
    assert len(calls) == 3

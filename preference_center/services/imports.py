"""Importing event contact lists: read, check every row, write once.

An import never subscribes anyone (G16): new addresses become contacts waiting for their own
confirmation through the permission email. Addresses that are subscribed, unsubscribed,
suppressed or asked within the last year are reported and left alone, and that is checked when
the rows are written, so an unsubscribe during an import is never undone (F4).

The whole file is one transaction (all or nothing on a technical failure); a bad row is a line
in the report, never a reason to stop. Rows are handled in chunks, with one query per chunk
for each check and one bulk insert per table (:mod:`.import_chunks`), so a 100,000-row file
takes seconds and constant memory. On PostgreSQL a helper thread writes each chunk while
the next one is read and checked, in the same transaction.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any, BinaryIO

from sqlalchemy import select

from .. import readers
from ..extensions import db
from ..models import (
    CollectedBy,
    ImportBatch,
    ImportRow,
    ImportStatus,
    utcnow,
)
from . import audit
from .bulk import tuned_for_bulk
from .import_chunks import ImportRun, OverlappedWrites, check_rows, write_chunk
from .preferences import neutralise

#: Rows per chunk: SQLite, and PostgreSQL. Each chunk costs PostgreSQL a handful of
#: statements (three lookups, the staging table, two inserts), each parsed, planned and
#: started, and the writer thread a few waits for the server and for the GIL; in larger
#: chunks the server spends about 10% less CPU per row (1,000 -> 5,000 rows), and the
#: writer, the import's critical path, about 10% less time per row again (5,000 -> 10,000:
#: 23 -> 21 us, 100,000 rows 4% faster in all). A chunk in flight holds a few MB at most.
#: SQLite gains nothing from larger chunks (its CPU per row grew a little).
CHUNK = 1000
POSTGRESQL_CHUNK = 10_000
#: The GIL switch interval (s) while a helper thread writes an import's chunks (_overlapped).
OVERLAP_SWITCH_INTERVAL = 0.0005
#: SQLite's page cache during an import (KiB); see bulk.tuned_for_bulk. At most this much
#: memory more, used only as the file needs it.
IMPORT_CACHE_KIB = 64 * 1024


class ProvenanceMissing(ValueError):
    """Event name, event date and collection method are required (G17)."""


@dataclass(frozen=True)
class Provenance:
    event_name: str
    event_date: date
    collected_by: CollectedBy
    uploaded_by: str

    @classmethod
    def checked(cls, event_name: str | None, event_date: date | None, collected_by: str | None,
                uploaded_by: str) -> Provenance:  # fmt: skip
        if not (event_name or "").strip() or event_date is None or not collected_by:
            raise ProvenanceMissing("event name, event date and collection method are required")
        try:
            method = CollectedBy(collected_by)
        except ValueError:
            raise ProvenanceMissing(f"unknown collection method {collected_by!r}") from None
        return cls(event_name.strip()[:200], event_date, method, uploaded_by)


def sha256_of(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    stream.seek(0)
    for block in iter(lambda: stream.read(1 << 16), b""):
        digest.update(block)
    stream.seek(0)
    return digest.hexdigest()


def import_contacts(
    stream: BinaryIO,
    *,
    filename: str,
    provenance: Provenance,
    options: dict[str, Any] | None = None,
    language: str = "nl",
    progress: Any = None,
) -> ImportBatch:
    """Read ``stream`` and write the batch, its report and its new contacts in one commit.

    Raises :class:`readers.ReadError` for a file that is not a contact list (nothing is
    written) and :class:`ProvenanceMissing` without provenance.
    """
    options = dict(options or {})
    reader_options = {k: options.get(k) for k in ("encoding", "delimiter", "sheet")}
    readers.sniff(stream, filename, **reader_options)  # refuses archives, binaries, ... first
    batch = new_batch(stream, filename=filename, provenance=provenance, options=options,
                      language=language, status=ImportStatus.IMPORTING)  # fmt: skip
    db.session.flush()
    return _fill(batch, stream, progress)


def new_batch(stream: BinaryIO, *, filename: str, provenance: Provenance,
              options: dict[str, Any], language: str, status: ImportStatus) -> ImportBatch:  # fmt: skip
    batch = ImportBatch(
        event_name=provenance.event_name,
        event_date=provenance.event_date,
        collected_by=provenance.collected_by,
        uploaded_by=provenance.uploaded_by,
        filename=filename[:255],
        file_sha256=sha256_of(stream),
        options=options,
        language=language,
        status=status,
    )
    db.session.add(batch)
    return batch


def _fill(batch: ImportBatch, stream: BinaryIO, progress: Any = None) -> ImportBatch:
    """Read every row of ``stream`` into ``batch`` and commit once."""
    filename = batch.filename
    options = dict(batch.options or {})
    reader_options = {k: options.get(k) for k in ("encoding", "delimiter", "sheet")}
    provenance_actor = batch.uploaded_by
    run = ImportRun(batch.id, batch.language)
    rows = readers.read_rows(stream, options.get("mapping"), filename=filename, **reader_options)
    # Counted here and stored once: updating the batch row per chunk would leave a version of
    # it per chunk, which PostgreSQL's foreign key checks on every contact and report row
    # then walk through. Nobody else can see the count before the commit anyway; the page
    # follows the progress callback (a file, for the worker).
    rows_read = 0
    with _older_objects_frozen(), tuned_for_bulk(IMPORT_CACHE_KIB), _overlapped(run):
        for chunk in _chunks(rows, POSTGRESQL_CHUNK if run.overlap is not None else CHUNK):
            write_chunk(run, check_rows(chunk))
            rows_read += len(chunk)
            if progress is not None:
                progress(rows_read)
        if run.overlap is not None:
            run.overlap.finish()
    batch.rows_read = rows_read
    batch.counts = dict(run.counts)
    batch.status = ImportStatus.IMPORTED
    batch.imported_at = utcnow()
    audit.record(provenance_actor, "import", f"batch {batch.id}", file=filename,
                 sha256=batch.file_sha256, event=batch.event_name, counts=batch.counts)  # fmt: skip
    db.session.commit()
    return batch


@contextmanager
def _older_objects_frozen() -> Iterator[None]:
    """Keep the cyclic garbage collector off the objects that existed before the import.

    An import allocates containers by the million (rows, tuples, lists of a chunk), and some
    live for a chunk or two: they survive the young generations, and every so many of them
    make Python run a full collection, which walks every tracked object of the process (the
    application, SQLAlchemy's metadata, the libraries: 70 ms or more each time, about 0.5 s
    of CPU per 100,000 rows, a fifth of the import's own CPU). ``gc.freeze()`` moves what
    exists now to the permanent generation, so those collections walk only what the import
    made; ``gc.unfreeze()`` gives the objects back to the collector afterwards, and one that
    became garbage meanwhile is collected then. Nothing is collected less among the import's
    own objects, so its memory stays as flat as before (G7).

    Left alone when something else froze objects already (a pre-fork hook, an import running
    on another thread): unfreezing would undo that.
    """
    if gc.get_freeze_count() or not gc.isenabled():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def _overlapped(run: ImportRun) -> Iterator[None]:
    """On PostgreSQL, write each chunk while the next is read and checked (OverlappedWrites).

    SQLite gains nothing: there is no server to work meanwhile, so its chunks are written in
    order. While the helper thread writes, the process switches threads every
    ``OVERLAP_SWITCH_INTERVAL`` seconds instead of every 5 ms: the helper waits for the
    server four times a chunk, and each time the server has answered it needs the GIL back
    from the main thread, which is busy checking rows; the setting is restored afterwards.
    """
    bound = db.session.connection()
    if bound.dialect.name != "postgresql":
        yield
        return
    run.overlap = OverlappedWrites(run, bound)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, OVERLAP_SWITCH_INTERVAL))
    try:
        yield
    finally:
        try:
            run.overlap.close()
        finally:
            run.overlap = None
            sys.setswitchinterval(interval)


# --- uploads through the web: preview first, then a job for the worker ----------------------


def upload_path(batch_id: int) -> Any:
    from pathlib import Path

    from flask import current_app

    folder = Path(current_app.instance_path) / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"batch-{batch_id}.upload"


def start_upload(
    stream: BinaryIO, *, filename: str, provenance: Provenance, language: str
) -> ImportBatch:
    """Keep an uploaded file for its preview; nothing is imported yet."""
    info = readers.sniff(stream, filename)
    options = {"encoding": info.encoding, "delimiter": info.delimiter, "sheet": info.sheet,
               "mapping": info.mapping}  # fmt: skip
    batch = new_batch(stream, filename=filename, provenance=provenance, options=options,
                      language=language, status=ImportStatus.PREVIEW)  # fmt: skip
    db.session.flush()
    stream.seek(0)
    with upload_path(batch.id).open("wb") as target:
        for block in iter(lambda: stream.read(1 << 16), b""):
            target.write(block)
    audit.record(provenance.uploaded_by, "upload", f"batch {batch.id}", file=filename,
                 sha256=batch.file_sha256)  # fmt: skip
    db.session.commit()
    return batch


def preview(batch: ImportBatch) -> readers.FileInfo:
    options = batch.options or {}
    with upload_path(batch.id).open("rb") as stream:
        return readers.sniff(stream, batch.filename, encoding=options.get("encoding"),
                             delimiter=options.get("delimiter"), sheet=options.get("sheet"))  # fmt: skip


def set_options(batch: ImportBatch, options: dict[str, Any]) -> readers.FileInfo:
    """Apply the marketer's choices from the preview; refuse ones the file cannot be read with."""
    previous = batch.options
    batch.options = {**(batch.options or {}), **options}
    try:
        info = preview(batch)
    except readers.ReadError:
        batch.options = previous
        db.session.rollback()
        raise
    db.session.commit()
    return info


def queue(batch: ImportBatch) -> None:
    """Hand the import to the worker: a big file never holds a web request open (G7)."""
    batch.status = ImportStatus.QUEUED
    db.session.commit()


def run_queued() -> int | None:
    """Import the oldest queued upload, if any (called by the outbox worker's loop)."""
    from sqlalchemy import update as sql_update

    batch_id = db.session.scalar(
        select(ImportBatch.id)
        .where(ImportBatch.status == ImportStatus.QUEUED)
        .order_by(ImportBatch.id)
        .limit(1)
    )
    if batch_id is None:
        db.session.rollback()
        return None
    claimed = db.session.execute(
        sql_update(ImportBatch)
        .where(ImportBatch.id == batch_id, ImportBatch.status == ImportStatus.QUEUED)
        .values(status=ImportStatus.IMPORTING)
    ).rowcount
    db.session.commit()
    if not claimed:
        return None  # another worker took it
    batch = db.session.get(ImportBatch, batch_id)
    path = upload_path(batch_id)
    progress_file = path.with_suffix(".progress")
    try:
        with path.open("rb") as stream:
            _fill(batch, stream, progress=lambda rows: progress_file.write_text(str(rows)))
    except Exception as exc:  # a technical failure: nothing of the batch is kept (one transaction)
        db.session.rollback()
        db.session.execute(
            sql_update(ImportBatch).where(ImportBatch.id == batch_id)
            .values(status=ImportStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:500])
        )  # fmt: skip
        db.session.commit()
        return batch_id
    finally:
        progress_file.unlink(missing_ok=True)
    path.unlink(missing_ok=True)  # the report holds what is needed; the raw file goes
    return batch_id


def progress_of(batch: ImportBatch) -> int:
    """Rows read so far by the worker (kept in a file: the import's transaction is open)."""
    if batch.status is not ImportStatus.IMPORTING:
        return batch.rows_read
    try:
        return int(upload_path(batch.id).with_suffix(".progress").read_text() or 0)
    except (OSError, ValueError):
        return 0


def _chunks(rows: Iterator[readers.Row], size: int) -> Iterator[list[readers.Row]]:
    chunk: list[readers.Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def report_csv(batch_id: int) -> Iterator[str]:
    """The per-row report as CSV, formula-neutralised (the marketer opens it in Excel)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["line", "email", "outcome", "reason", "address_kind"])
    yield _drain(buffer)
    rows = db.session.execute(
        select(
            ImportRow.line,
            ImportRow.email,
            ImportRow.outcome,
            ImportRow.reason,
            ImportRow.address_kind,
        )
        .where(ImportRow.batch_id == batch_id)
        .order_by(ImportRow.line, ImportRow.id)
        .execution_options(yield_per=2000)
    )
    for line, email, outcome, reason, kind in rows:
        writer.writerow(
            [line, neutralise(email), outcome.value, reason or "", kind.value if kind else ""]
        )
        yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text

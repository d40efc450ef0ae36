"""The outbox: emails are rows written with the change that causes them, sent by a worker.

A web request never talks SMTP. The worker claims due rows with a lease, sends each over one
reused SMTP connection, and marks each row sent in its own short transaction, so:

* two workers never send the same row (the claim is an atomic conditional UPDATE, with
  ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so workers don't queue behind each other);
* a worker killed mid-batch loses nothing: its lease expires and the rows go out again,
  with the same Message-ID (at-least-once; at most the message in flight is repeated, one
  per worker process however many SMTP connections it sends over, see ``_SentMarks``);
* temporary failures back off exponentially, permanent ones are recorded and never retried.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Connection, or_, select, update
from sqlalchemy.orm import Session, joinedload

from .. import addresses
from ..extensions import db
from ..models import Contact, OutboxMessage, OutboxStatus, utcnow
from ..services import changes
from . import messages
from .builders import SkipMessage
from .caps import HourlyCaps
from .results import finish as _finish  # outbox._finish: the E4 tests stop a worker there
from .transport import Outcome, SMTPConnection, classify


def enqueue(
    template: str,
    to: addresses.Address,
    language: str,
    *,
    to_name: str | None = None,
    context: dict[str, Any] | None = None,
    contact: Contact | None = None,
    category: str = "transactional",
) -> OutboxMessage:
    """Add an email to the caller's transaction; it leaves only if the caller commits."""
    row = OutboxMessage(
        **row_values(template, to.ascii, language, to_name, context, category), contact=contact
    )
    db.session.add(row)
    return row


def row_values(
    template: str,
    to_address: str,
    language: str,
    to_name: str | None,
    context: dict[str, Any] | None,
    category: str,
) -> dict[str, Any]:
    """An outbox row's own columns, for ``enqueue`` and for ``services.outbox_rows``' INSERT.

    ``to_address`` is the ASCII form SMTP gets (``Address.ascii``).
    """
    return {
        "message_id": messages.new_message_id(),
        "template": template,
        "category": category,
        "to_address": to_address,
        # The column holds 100 characters; the header cuts further (messages.MAX_DISPLAY_NAME).
        "to_name": to_name[:100] if to_name else None,
        "language": language,
        "context": context or {},
    }


@dataclass
class BatchReport:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    held: int = 0
    cancelled: int = 0
    errors: list[str] = field(default_factory=list)


def _free() -> Any:
    now = utcnow()
    return or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now)


def claim(worker: str, limit: int, lease: timedelta) -> list[OutboxMessage]:
    """Lease up to ``limit`` due rows to ``worker`` and return them (committed)."""
    now = utcnow()
    due = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status == OutboxStatus.PENDING,
            OutboxMessage.next_attempt_at <= now,
            _free(),
        )
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    # The repeated "free" condition makes the UPDATE a compare-and-set: on SQLite, where
    # there is no row locking, a row another worker leased in between is simply not taken.
    ids = db.session.scalars(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(due.scalar_subquery()), _free())
        .values(locked_by=worker, locked_until=now + lease)
        .returning(OutboxMessage.id)
    ).all()
    db.session.commit()
    if not ids:
        return []
    # Read in a session of its own, closed at once: that ends the read transaction (never
    # idle inside one while sending) and detaches the rows and their contacts in one go
    # (expunging them one by one walked every row's cascades). Detached, the rows are not
    # expired by the per-message commits of the batch, which would reload each of them; the
    # worker only reads them.
    with Session(db.session.get_bind()) as reader:
        rows = reader.scalars(
            select(OutboxMessage)
            .options(joinedload(OutboxMessage.contact))
            .where(OutboxMessage.id.in_(ids))
            .order_by(OutboxMessage.id)
        ).all()
    return list(rows)


def _backoff(attempts: int) -> timedelta:
    config = current_app.config
    delay = min(config["OUTBOX_RETRY_BASE"] * 2 ** max(attempts - 1, 0), config["OUTBOX_RETRY_MAX"])
    # Jitter spreads retries so that a recovering server isn't hit by every worker at once.
    return timedelta(seconds=delay * random.uniform(0.9, 1.1))  # noqa: S311


def _retry_or_give_up(row: OutboxMessage, worker: str, error: str) -> bool:
    """Schedule another attempt, or fail the row once the retry period is over."""
    attempts = row.attempts + 1
    retry_period = timedelta(seconds=current_app.config["OUTBOX_RETRY_PERIOD"])
    expired = utcnow() - row.created_at > retry_period
    if attempts >= current_app.config["OUTBOX_ALERT_AFTER"] or expired:
        # Logged at ERROR so that whatever watches the logs raises an alert (E1, E7).
        current_app.logger.error(
            "outbox %s still undelivered after %d attempts%s: %s",
            row.id,
            attempts,
            "; giving up" if expired else "",
            error,
        )
    if expired:
        _finish(row.id, worker, attempts=attempts, status=OutboxStatus.FAILED, last_error=error)
        return False
    _finish(
        row.id,
        worker,
        attempts=attempts,
        next_attempt_at=utcnow() + _backoff(attempts),
        last_error=error,
    )
    return True


def _record_hard_bounce(row: OutboxMessage) -> None:
    if row.contact_id is not None:
        bounces = db.session.scalar(
            update(Contact)
            .where(Contact.id == row.contact_id)
            .values(hard_bounces=Contact.hard_bounces + 1)
            .returning(Contact.hard_bounces)
        )
        # At the limit the address is dead for us: the mailing list must drop it too (L2).
        if bounces == int(current_app.config["OUTBOX_HARD_BOUNCE_LIMIT"]):
            changes.record_bounce(row.contact_id)
        db.session.commit()


def _bounced_out(row: OutboxMessage) -> bool:
    contact = row.contact
    limit = current_app.config["OUTBOX_HARD_BOUNCE_LIMIT"]
    return contact is not None and contact.hard_bounces >= limit


def deliver(
    rows: Sequence[OutboxMessage],
    worker: str,
    connection: SMTPConnection | None,
    lease_ends: Callable[[], bool],
    prefetch: Callable[[], object] | None = None,
    gate: threading.Lock | None = None,
    marks_thread: ThreadPoolExecutor | None = None,
) -> tuple[BatchReport, SMTPConnection | None]:
    """Send ``rows`` over ``connection`` (opened on first use); return it for reuse.

    ``gate`` is shared by the sender loops of one worker process (``worker.py``): a loop holds
    it from sending a body until that message is recorded, so however many connections a
    worker sends over, at most one accepted message is ever unrecorded (catalogue E4).
    ``marks_thread`` is the sender loop's thread for the "sent" marks on PostgreSQL (see
    :class:`_SentMarks`); without one, a batch on PostgreSQL starts its own.

    ``prefetch``, if given, is called once during the batch's last exchange: the worker
    claims its next batch there (``worker.py``).

    The "sent" marks, one per message, are written over one database connection held for the
    batch: giving the session's connection back to the pool after every commit cost a checkout
    and a pre-ping round trip per message. It runs in autocommit, so each mark is one UPDATE
    that is its own transaction, committed when the statement ends (as durable as before),
    without BEGIN and COMMIT round trips on PostgreSQL, and without holding SQLite's write lock
    from the UPDATE until a later COMMIT while another sender thread runs. The rarer results
    (failures, retries, holds) go through the session as before.
    """
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as sent_marks:
        asynchronous = (
            sent_marks.dialect.name == "postgresql" and current_app.config["OUTBOX_ASYNC_COMMIT"]
        )
        if asynchronous:
            # OUTBOX_ASYNC_COMMIT: PostgreSQL confirms these commits before their WAL is
            # flushed to disk. A worker crash loses nothing (the commit is in the server's WAL
            # buffers, written within 3 x wal_writer_delay), so E4 still holds; a crash of the
            # database server itself can lose the marks of that last fraction of a second, and
            # those rows, still pending under an expired lease, are sent again with their
            # Message-IDs: duplicates, never a lost email. Only this connection is affected.
            sent_marks.exec_driver_sql("SET synchronous_commit TO off")
        own_thread = marks_thread is None and sent_marks.dialect.name == "postgresql"
        if own_thread:
            marks_thread = marks_executor()
        try:
            return _deliver(
                rows,
                worker,
                connection,
                lease_ends,
                sent_marks,
                prefetch=prefetch,
                marks_thread=marks_thread if sent_marks.dialect.name == "postgresql" else None,
                gate=gate or threading.Lock(),
            )
        finally:
            if own_thread and marks_thread is not None:
                marks_thread.shutdown(wait=True)
            if asynchronous:
                _reset_synchronous_commit(sent_marks)


def marks_executor() -> ThreadPoolExecutor:
    """The one thread a sender loop records its "sent" marks from, on PostgreSQL."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-marks")


def _reset_synchronous_commit(connection: Connection) -> None:
    """Put the server default back before the connection returns to the pool."""
    try:
        connection.exec_driver_sql("RESET synchronous_commit")
    except Exception:  # a broken connection: the pool must not hand it out again
        connection.invalidate()


@dataclass(slots=True)
class _Prepared:
    """A row's message and bytes, or what stopped it from being built."""

    rendered: messages.Rendered | None = None
    message: messages.OutboxMail | None = None
    raw: bytes = b""
    error: BaseException | None = None

    def render(self, row: OutboxMessage) -> _Prepared:
        try:
            self.rendered = messages.render(row)
        except Exception as exc:  # handled, or re-raised, when the row's turn comes
            self.error = exc
        return self

    def build(self, row: OutboxMessage) -> None:
        if self.error is None and self.message is None:
            assert self.rendered is not None
            try:
                self.message = messages.build(row, self.rendered)
                # A bad header is refused here, before the SMTP exchange.
                self.raw = self.message.as_bytes()
            except Exception as exc:
                self.error = exc


def _deliver(
    rows: Sequence[OutboxMessage],
    worker: str,
    connection: SMTPConnection | None,
    lease_ends: Callable[[], bool],
    sent_marks: Connection,
    prefetch: Callable[[], object] | None,
    marks_thread: ThreadPoolExecutor | None,
    gate: threading.Lock,
) -> tuple[BatchReport, SMTPConnection | None]:
    """Send the batch, overlapping the worker's own work with the server's.

    Rendering and building a message, and recording one as sent, cost about as much CPU as
    the SMTP server spends on a message; done in turn with the exchange they doubled the
    time per message. So, without pipelining commands, each is done while the server works
    on a command of the current exchange (``send_split``): the
    previous message's "sent" mark is started while the server answers ``MAIL FROM`` (see
    :class:`_SentMarks`), the next row's message is rendered while it answers ``RCPT TO``
    and built while it reads the body. The mark is always complete before the current
    message's body is sent, so at most one accepted message is ever unrecorded: a crash
    still repeats at most one message (catalogue E4), and the ``finally`` below records the
    last one however the batch ends.
    While the server answers the last message's ``RCPT TO``, ``prefetch`` runs (the next
    claim): before the gate is taken, so no other loop waits for it, and before the body, so
    an error in it can't leave an accepted message unrecorded.
    """
    report = BatchReport(claimed=len(rows))
    caps = HourlyCaps.load(rows)
    marks = _SentMarks(worker, sent_marks, gate, marks_thread)
    ahead: dict[int, _Prepared] = {}  # the next row's message, rendered during the wait

    try:
        for index, row in enumerate(rows):
            if lease_ends():
                # Too close to the end of our lease: another worker may take these rows soon,
                # so stop rather than risk sending one twice. They stay due.
                release(rows[index:], worker)
                break
            if _bounced_out(row):
                _finish(
                    row.id,
                    worker,
                    status=OutboxStatus.FAILED,
                    last_error="hard bounce limit",
                )
                report.failed += 1
                continue
            if caps.hold(row):
                # Over the hourly cap for confirmation emails (C10): wait, don't send, don't drop.
                _finish(row.id, worker, next_attempt_at=utcnow() + caps.retry_after)
                report.held += 1
                continue
            prepared = ahead.pop(row.id, None) or _Prepared()
            if prepared.rendered is None and prepared.error is None:
                prepared.render(row)
            prepared.build(row)
            if isinstance(prepared.error, SkipMessage):
                _finish(
                    row.id,
                    worker,
                    status=OutboxStatus.CANCELLED,
                    last_error=str(prepared.error),
                )
                report.cancelled += 1
                continue
            if isinstance(prepared.error, messages.BadHeaderError):
                _finish(row.id, worker, status=OutboxStatus.FAILED, last_error=str(prepared.error))
                report.failed += 1
                continue
            if prepared.error is not None:
                raise prepared.error
            assert prepared.message is not None

            following = rows[index + 1] if index + 1 < len(rows) else None

            def while_waiting(stage: str, following: OutboxMessage | None = following) -> None:
                if stage == "mail":
                    marks.start()
                elif stage == "body-next":
                    marks.enter()  # E4: every accepted message is recorded before this one
                elif following is None:
                    if stage == "rcpt" and prefetch is not None:
                        prefetch()
                    return
                elif stage == "rcpt" and following.id not in ahead:
                    ahead[following.id] = _Prepared().render(following)
                elif stage == "body" and following.id in ahead:
                    ahead[following.id].build(following)

            try:
                if connection is None:
                    connection = SMTPConnection()
                    connection.host = connection.configure_host()
                connection.deliver(
                    prepared.message,
                    prepared.raw,
                    while_waiting=while_waiting,
                )
            except Exception as exc:  # classify() re-raises anything that is not a mail error
                marks.settle()  # however far the exchange got
                outcome, error = classify(exc)
                report.errors.append(error)
                current_app.logger.warning(
                    "outbox %s to %s: %s", row.id, addresses.mask(row.to_address), error
                )
                if outcome is Outcome.PERMANENT:
                    _finish(
                        row.id,
                        worker,
                        attempts=row.attempts + 1,
                        status=OutboxStatus.FAILED,
                        last_error=error,
                    )
                    _record_hard_bounce(row)
                    report.failed += 1
                    continue
                if _retry_or_give_up(row, worker, error):
                    report.retried += 1
                else:
                    report.failed += 1
                if outcome is Outcome.CONNECTION:
                    # The server is gone: every other row of the batch waits for the same backoff.
                    for rest in rows[index + 1 :]:
                        _retry_or_give_up(rest, worker, error)
                        report.retried += 1
                    close_smtp(connection)
                    return report, None
                continue
            marks.accepted = row  # first: nothing runs between acceptance and the hand-off
            caps.count(row)
            report.sent += 1
    finally:
        marks.close()
    return report, connection


class _SentMarks:
    """Records each message the server accepted as sent, one at a time, in order.

    ``accepted`` is the one message accepted but not yet recorded. :meth:`start` begins its
    mark and :meth:`settle` waits until it is committed. Before a body is sent, :meth:`enter`
    settles the loop's own mark and takes ``gate``, the lock the worker's sender loops share;
    it is given back once the message that follows the body is recorded (or turned out not to
    be accepted). So at most one accepted message of the whole worker process is unrecorded
    at any time, which keeps catalogue E4 to one repeated message per crash, with one
    connection or several.

    On SQLite the mark is a local write of some 0.1 ms and runs at once. On PostgreSQL it is a
    round trip and a WAL flush to disk (``fdatasync``, measured at 0.3 to 0.8 ms here), longer
    than the server's reply to ``MAIL FROM``; there it runs in a thread of its own, blocked in
    the driver without the GIL, so the flush overlaps ``MAIL FROM``, ``RCPT TO`` and ``DATA``
    instead of adding to every message. Only that thread uses the batch's connection until
    the mark is settled.
    """

    def __init__(
        self,
        worker: str,
        connection: Connection,
        gate: threading.Lock,
        executor: ThreadPoolExecutor | None,
    ) -> None:
        self.worker = worker
        self.connection = connection
        self.gate = gate
        self.holding = False  # changed by the mark thread too, under _state
        self._state = threading.Lock()
        self.accepted: OutboxMessage | None = None
        self.pending: Future[None] | None = None
        #: The sender loop's marks thread (PostgreSQL), or None to mark in this thread.
        self.executor = executor

    def enter(self) -> None:
        """Wait until this loop may send a body: its own mark done, the gate taken."""
        self.settle()
        self.gate.acquire()
        with self._state:
            self.holding = True

    def start(self) -> None:
        """Begin recording the accepted message, if any; with none, give the gate back."""
        row, self.accepted = self.accepted, None
        if row is None:
            if self.pending is None:
                self._leave()  # nothing left to record: e.g. the message was refused
            return  # otherwise the mark in flight gives the gate back when it is done
        # A message is accepted only after enter() waited for the previous mark: none is
        # in flight here, and this mark gives the gate back once it is committed.
        assert self.pending is None
        if self.executor is None:
            self._mark(row)
        else:
            self.pending = self.executor.submit(self._mark, row)

    def settle(self) -> None:
        """Start the pending mark if need be and wait until it is committed (or raise)."""
        self.start()
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.settle()
        finally:
            self._leave()

    def _mark(self, row: OutboxMessage) -> None:
        try:
            _finish(
                row.id,
                self.worker,
                connection=self.connection,
                status=OutboxStatus.SENT,
                sent_at=utcnow(),
                attempts=row.attempts + 1,
                last_error=None,
            )
        finally:
            self._leave()  # recorded, or the worker is failing: the next body may go out

    def _leave(self) -> None:
        with self._state:
            if self.holding:
                self.holding = False
                self.gate.release()


def release(rows: Sequence[OutboxMessage], worker: str) -> None:
    """Give ``rows`` back unsent: due at once for any worker."""
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_([r.id for r in rows]), OutboxMessage.locked_by == worker)
        .values(locked_by=None, locked_until=None)
    )
    db.session.commit()


def close_smtp(connection: SMTPConnection | None) -> None:
    """Say QUIT (or just close a broken connection); None is fine."""
    if connection is not None:
        connection.__exit__(None, None, None)


def counts() -> dict[str, int]:
    """Rows per status, for ``flask outbox status`` and monitoring."""
    result = {status.value: 0 for status in OutboxStatus}
    rows = db.session.execute(
        select(OutboxMessage.status, db.func.count()).group_by(OutboxMessage.status)
    ).all()
    for status, number in rows:
        result[status.value] = number
    due = db.session.scalar(
        select(db.func.count())
        .select_from(OutboxMessage)
        .where(
            OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.next_attempt_at <= utcnow()
        )
    )
    result["due"] = due or 0
    db.session.rollback()
    return result


def __getattr__(name: str) -> Any:
    # The worker loop lives in worker.py, which imports this module; ``outbox.Worker`` and
    # ``outbox.worker_name`` still work for the CLI, the tests and the benchmark.
    if name in ("Worker", "worker_name"):
        from . import worker

        return getattr(worker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

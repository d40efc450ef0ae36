"""The outbox worker: claims due rows in batches and delivers them until stopped."""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from flask import current_app

from ..extensions import db
from ..models import OutboxMessage, utcnow
from .outbox import BatchReport, claim, close_smtp, deliver, marks_executor, release
from .transport import SMTPConnection


def worker_name() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{random.randrange(1 << 16):04x}"  # noqa: S311


class Worker:
    """Runs the outbox until stopped (SIGINT/SIGTERM finish the batch in flight first).

    With ``concurrency`` N above 1 (``OUTBOX_CONCURRENCY``), N sender loops run in threads of
    this process. Each is a worker of its own as far as the outbox is concerned: its own lease
    name, its own claims (so two loops never send one row, like two worker processes), its own
    SMTP connection, database session and connection. While one loop waits for the SMTP server,
    another renders and records, so a relay's round trips overlap. The loops share one lock,
    ``acceptance``, held from sending a body until that message is recorded as sent, so
    however many loops run, at most one accepted message of the process is unrecorded at any
    time: a crash repeats at most one message (catalogue E4). Only the bodies take turns;
    commands, rendering and claims of the loops overlap.
    """

    def __init__(
        self,
        batch_size: int | None = None,
        poll_interval: float | None = None,
        name: str | None = None,
        concurrency: int | None = None,
    ) -> None:
        config = current_app.config
        self.name = name or worker_name()
        self.batch_size = batch_size or int(config["OUTBOX_BATCH_SIZE"])
        self.poll_interval = (
            poll_interval if poll_interval is not None else float(config["OUTBOX_POLL_INTERVAL"])
        )
        self.concurrency = concurrency or int(config["OUTBOX_CONCURRENCY"])
        if self.concurrency < 1:
            raise ValueError("the outbox concurrency must be at least 1")
        timeout = float(config["MAIL_TIMEOUT"])
        # Every SMTP step is bounded by the timeout; allow a few per message, plus margin.
        self.per_message = timedelta(seconds=timeout * 4)
        self.lease = self.per_message * self.batch_size + timedelta(seconds=60)
        self.stopping = False
        self.total = BatchReport()
        #: Other queued work run between batches (the CLI adds the import jobs).
        self.side_jobs: list[Callable[[], object]] = []
        self._lock = threading.Lock()
        #: Held by a sender loop from sending a body until that message is recorded: one
        #: unrecorded accepted message per process at most, whatever the concurrency (E4).
        self.acceptance = threading.Lock()

    def stop(self, *_: object) -> None:
        self.stopping = True

    def run(
        self, once: bool = False, on_batch: Callable[[BatchReport], None] | None = None
    ) -> BatchReport:
        """Process batches; with ``once``, stop when nothing is due any more."""
        if not once:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        if self.concurrency == 1:
            self._loop(self.name, once, on_batch, side_jobs=True)
            return self.total
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        failures: list[BaseException] = []

        def loop(index: int) -> None:
            try:
                with app.app_context():
                    # The first loop also runs the side jobs: one import at a time, as before.
                    self._loop(f"{self.name[:59]}/{index}", once, on_batch, side_jobs=index == 0)
            except BaseException as exc:  # re-raised by run() once every loop has stopped
                failures.append(exc)
                self.stopping = True  # the others finish their batch and stop

        threads = [
            threading.Thread(target=loop, args=(index,), name=f"outbox-{index}", daemon=True)
            for index in range(self.concurrency)
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                # A timeout keeps the main thread able to take SIGINT/SIGTERM while it waits.
                while thread.is_alive():
                    thread.join(timeout=1.0)
        except BaseException:
            # Ctrl-C without our handler (``once``): let every loop finish its batch first.
            self.stopping = True
            for thread in threads:
                thread.join()
            raise
        if failures:
            raise failures[0]
        return self.total

    def _loop(
        self,
        name: str,
        once: bool,
        on_batch: Callable[[BatchReport], None] | None,
        side_jobs: bool,
    ) -> None:
        """One sender: claim a batch as ``name``, deliver it over one SMTP connection, repeat.

        The next batch is claimed during the current batch's last exchange (``deliver``'s
        ``prefetch``), so that the SMTP server is not left idle while the
        worker claims and loads rows (docs/benchmarks.md). Rows claimed ahead but not sent,
        because the worker is stopping or failed, are released at once rather than left to
        wait for their lease to run out.
        """
        connection: SMTPConnection | None = None
        ahead: list[tuple[list[OutboxMessage], datetime]] = []
        # One thread for this loop's "sent" marks on PostgreSQL, for as long as it runs.
        marks_thread = marks_executor() if db.engine.dialect.name == "postgresql" else None

        def claim_ahead() -> None:
            if not self.stopping and not ahead:
                claimed_at = utcnow()
                ahead.append((claim(name, self.batch_size, self.lease), claimed_at))

        try:
            while not self.stopping:
                if side_jobs:
                    for job in self.side_jobs:
                        job()
                if ahead:
                    rows, claimed_at = ahead.pop()
                else:
                    claimed_at = utcnow()
                    rows = claim(name, self.batch_size, self.lease)
                if not rows:
                    close_smtp(connection)
                    connection = None
                    if once:
                        break
                    time.sleep(self.poll_interval)
                    continue
                deadline = claimed_at + self.lease - self.per_message
                report, connection = deliver(
                    rows,
                    name,
                    connection,
                    lease_ends=lambda d=deadline: utcnow() >= d,
                    prefetch=claim_ahead,
                    gate=self.acceptance,
                    marks_thread=marks_thread,
                )
                with self._lock:
                    self._add(report)
                    if on_batch:
                        on_batch(report)
                if once and not (report.sent or report.failed or report.cancelled):
                    break  # only retries or held rows left, all scheduled for later
        finally:
            close_smtp(connection)
            if marks_thread is not None:
                marks_thread.shutdown(wait=True)
            db.session.rollback()
            for rows, _ in ahead:
                if rows:
                    try:
                        release(rows, name)
                    except Exception:  # the error that stopped the loop matters more
                        current_app.logger.exception("outbox: could not release claimed rows")

    def _add(self, report: BatchReport) -> None:
        self.total.claimed += report.claimed
        self.total.sent += report.sent
        self.total.retried += report.retried
        self.total.failed += report.failed
        self.total.held += report.held
        self.total.cancelled += report.cancelled
        self.total.errors.extend(report.errors)

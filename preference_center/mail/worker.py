"""The outbox worker: claims due rows in batches and delivers them until stopped."""

from __future__ import annotations

import os
import random
import signal
import socket
import time
from collections.abc import Callable
from datetime import timedelta

from flask import current_app

from ..extensions import db
from ..models import utcnow
from .outbox import BatchReport, claim, close_smtp, deliver
from .transport import SMTPConnection


def worker_name() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{random.randrange(1 << 16):04x}"  # noqa: S311


class Worker:
    """Runs the outbox until stopped (SIGINT/SIGTERM finish the message in flight first)."""

    def __init__(
        self,
        batch_size: int | None = None,
        poll_interval: float | None = None,
        name: str | None = None,
    ) -> None:
        config = current_app.config
        self.name = name or worker_name()
        self.batch_size = batch_size or int(config["OUTBOX_BATCH_SIZE"])
        self.poll_interval = (
            poll_interval if poll_interval is not None else float(config["OUTBOX_POLL_INTERVAL"])
        )
        timeout = float(config["MAIL_TIMEOUT"])
        # Every SMTP step is bounded by the timeout; allow a few per message, plus margin.
        self.per_message = timedelta(seconds=timeout * 4)
        self.lease = self.per_message * self.batch_size + timedelta(seconds=60)
        self.stopping = False
        self.total = BatchReport()
        #: Other queued work run between batches (the CLI adds the import jobs).
        self.side_jobs: list[Callable[[], object]] = []

    def stop(self, *_: object) -> None:
        self.stopping = True

    def run(
        self, once: bool = False, on_batch: Callable[[BatchReport], None] | None = None
    ) -> BatchReport:
        """Process batches; with ``once``, stop when nothing is due any more."""
        if not once:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        connection: SMTPConnection | None = None
        try:
            while not self.stopping:
                for job in self.side_jobs:
                    job()
                rows = claim(self.name, self.batch_size, self.lease)
                if not rows:
                    close_smtp(connection)
                    connection = None
                    if once:
                        break
                    time.sleep(self.poll_interval)
                    continue
                deadline = utcnow() + self.lease - self.per_message
                report, connection = deliver(
                    rows, self.name, connection, lease_ends=lambda d=deadline: utcnow() >= d
                )
                self._add(report)
                if on_batch:
                    on_batch(report)
                if once and not (report.sent or report.failed or report.cancelled):
                    break  # only retries or held rows left, all scheduled for later
        finally:
            close_smtp(connection)
            db.session.rollback()
        return self.total

    def _add(self, report: BatchReport) -> None:
        self.total.claimed += report.claimed
        self.total.sent += report.sent
        self.total.retried += report.retried
        self.total.failed += report.failed
        self.total.held += report.held
        self.total.cancelled += report.cancelled
        self.total.errors.extend(report.errors)

"""Build the next email of a batch while the current one is on the wire.

Rendering and building a message is CPU work in this process; the SMTP exchange is mostly
waiting for the server's four replies. Done one after the other, a sender leaves the server idle
while it renders and itself idle while the server answers. :class:`NextMessage` renders the
next row on a helper thread during the exchange (the thread that waits on the socket releases
the GIL), so the two overlap.

Sending is unchanged: one message at a time over the connection, in claim order, each marked
sent right after the server accepted it, so a crash still repeats at most that one (E4). Only
the rendering moves, by at most one message, and only for rows whose rendering may happen a
little early (see :meth:`NextMessage.start`).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from flask import Flask, current_app

from ..extensions import db
from ..models import OutboxMessage
from . import messages

_local = threading.local()


def prepare(row: OutboxMessage) -> tuple[messages.OutboxMail, bytes]:
    """The message for ``row`` and its bytes; raises what rendering and building raise."""
    message = messages.build(row, messages.render(row))
    return message, message.as_bytes()  # a bad header is refused here, before any SMTP


class NextMessage:
    """At most one row being prepared ahead, on a helper thread with its own app context."""

    def __init__(self) -> None:
        self._app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        self._executor: ThreadPoolExecutor | None = None
        self._row: OutboxMessage | None = None
        self._future: Future[tuple[messages.OutboxMail, bytes]] | None = None

    def start(self, row: OutboxMessage | None) -> None:
        """Begin preparing ``row`` (the batch's next one) in the background.

        The caller passes only rows whose rendering has no effect that could go wrong if the
        row were then not sent at once: not held back by a cap, not failed for bounces. Even
        then a builder's effects are those of a send attempt that failed after rendering,
        which the outbox already handles (a confirmation link's clock restarts at the send).
        """
        if row is None:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix="outbox-render",
                initializer=_enter,
                initargs=(self._app,),
            )
        self._row, self._future = row, self._executor.submit(prepare, row)

    def take(self, row: OutboxMessage) -> tuple[messages.OutboxMail, bytes]:
        """``prepare(row)``: the result prepared ahead if it was, else prepared now."""
        future, self._future = self._future, None
        if future is not None and self._row is row:
            return future.result()  # re-raises SkipMessage, BadHeaderError and the rest
        if future is not None:
            _discard(future)
        return prepare(row)

    def close(self) -> None:
        """Wait for anything still being prepared, drop it, and end the helper thread."""
        if self._future is not None:
            _discard(self._future)
            self._future = None
        if self._executor is not None:
            self._executor.submit(_leave).result()
            self._executor.shutdown()
            self._executor = None


def _discard(future: Future[tuple[messages.OutboxMail, bytes]]) -> None:
    # Its row was not sent after all (the batch stopped): the outcome does not matter, and the
    # row goes out again later like any other unsent one.
    future.exception()


def _enter(app: Flask) -> None:
    context = app.app_context()
    context.push()
    _local.context = context


def _leave() -> None:
    db.session.remove()
    _local.context.pop()
    _local.context = None

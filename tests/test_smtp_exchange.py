"""``transport.send_split`` speaks exactly like ``smtplib.sendmail`` (catalogue E3, E4).

The worker sends each message with ``send_split`` so that it can work while the server answers
(docs/benchmarks.md). These tests hold it to smtplib's own behaviour byte for byte: a scripted
SMTP server on a real socket records every line each client sends and answers from a script,
and both clients must leave the same transcript and raise the same exception for every reply
the script gives, refusals and disconnections included.
"""

from __future__ import annotations

import smtplib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select

from preference_center import addresses
from preference_center.extensions import db
from preference_center.mail import outbox
from preference_center.mail.transport import send_split
from preference_center.models import OutboxMessage, OutboxStatus

MESSAGE = (
    b"From: Team <noreply@example.be>\r\nTo: jan@example.be\r\nSubject: Hi\r\n\r\n"
    b"Hello,\r\n.a line that starts with a dot\r\nBye\r\n"
)


@dataclass
class ScriptedServer:
    """Answers each command from ``replies`` (by verb; the body's final dot is "."), logs lines."""

    replies: dict[str, str] = field(default_factory=dict)
    ehlo: list[str] = field(
        default_factory=lambda: ["250-scripted.invalid", "250-SIZE 1000000", "250 8BITMIME"]
    )
    lines: list[bytes] = field(default_factory=list)
    #: verb -> event: the reply waits until the client sets it (5 s at most, then "451 held")
    hold: dict[str, threading.Event] = field(default_factory=dict)
    port: int = 0

    def serve_one(self, listener: socket.socket) -> None:
        connection, _ = listener.accept()
        with connection, connection.makefile("rb") as incoming:
            connection.sendall(b"220 scripted.invalid ESMTP\r\n")
            in_body = False
            for line in incoming:
                self.lines.append(line)
                if in_body:
                    if line != b".\r\n":
                        continue
                    in_body = False
                    verb = "."
                else:
                    verb = line.split(b" ", 1)[0].split(b":", 1)[0].strip().upper().decode()
                if verb == "EHLO":
                    connection.sendall("".join(f"{r}\r\n" for r in self.ehlo).encode())
                    continue
                reply = self.replies.get(verb) or {
                    "DATA": "354 go ahead",
                    "QUIT": "221 bye",
                }.get(verb, "250 OK")
                if reply == "close":
                    return
                if verb in self.hold and not self.hold[verb].wait(5):
                    reply = "451 4.4.1 held: the client never said it was waiting"
                connection.sendall(f"{reply}\r\n".encode())
                if verb == "DATA" and reply.startswith("354"):
                    in_body = True
                if verb == "QUIT":
                    return


@contextmanager
def scripted(**options) -> Iterator[ScriptedServer]:
    server = ScriptedServer(**options)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        server.port = listener.getsockname()[1]
        thread = threading.Thread(target=server.serve_one, args=(listener,), daemon=True)
        thread.start()
        yield server
        thread.join(timeout=10)
        assert not thread.is_alive(), "the scripted server is still waiting"


def exchange(client, **options) -> tuple[list[bytes], object, list[str]]:
    """Run ``client`` against a fresh scripted server: (lines received, result or exception)."""
    stages: list[str] = []
    with scripted(**options) as server:
        host = smtplib.SMTP("127.0.0.1", server.port, timeout=10)
        try:
            result: object = client(host, stages)
        except smtplib.SMTPException as exc:
            result = (type(exc), exc.args)
        try:
            host.quit()
        except smtplib.SMTPServerDisconnected:
            host.close()
    return server.lines, result, stages


def with_sendmail(sender, recipients, mail_options=()):
    def client(host, stages):
        return host.sendmail(sender, recipients, MESSAGE, mail_options)

    return client


def with_send_split(sender, recipients, mail_options=()):
    def client(host, stages):
        return send_split(
            host, sender, recipients, MESSAGE, mail_options, while_waiting=stages.append
        )

    return client


SCENARIOS = {
    "accepted": {},
    "sender refused": {"replies": {"MAIL": "550 5.7.1 not you"}},
    "recipient refused": {"replies": {"RCPT": "550 5.1.1 no such user"}},
    "recipient deferred": {"replies": {"RCPT": "450 4.2.1 try later"}},
    "data refused": {"replies": {"DATA": "554 5.3.4 no"}},
    "message refused after the body": {"replies": {".": "552 5.3.4 too big"}},
    "message deferred after the body": {"replies": {".": "451 4.3.0 later"}},
    "server shutting down at MAIL": {"replies": {"MAIL": "421 4.3.2 bye"}},
    "server shutting down at RCPT": {"replies": {"RCPT": "421 4.3.2 bye"}},
    "server shutting down after the body": {"replies": {".": "421 4.3.2 bye"}},
    "connection dropped after the body": {"replies": {".": "close"}},
    "no ESMTP size": {"ehlo": ["250 scripted.invalid"]},
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("sender", ["noreply@example.be", "Preference Center <noreply@example.be>"])
def test_e3_send_split_says_and_raises_what_sendmail_does(scenario, sender):
    options = SCENARIOS[scenario]
    recipients = ["jan@example.be"]
    expected_lines, expected, _ = exchange(with_sendmail(sender, recipients), **options)
    lines, result, _ = exchange(with_send_split(sender, recipients), **options)
    assert lines == expected_lines
    assert result == expected


def test_send_split_with_several_recipients_and_options_matches_sendmail():
    recipients = ["a@example.be", "b@example.be", "c@example.be"]
    options = {"replies": {"RCPT": "250 OK"}}
    expected_lines, expected, _ = exchange(
        with_sendmail("x@example.be", recipients, ["BODY=8BITMIME"]), **options
    )
    lines, result, stages = exchange(
        with_send_split("x@example.be", recipients, ["BODY=8BITMIME"]), **options
    )
    assert lines == expected_lines and result == expected == {}
    assert stages == ["mail", "rcpt", "rcpt", "rcpt", "data", "body-next", "body"]


def test_send_split_calls_back_while_each_reply_is_outstanding():
    """Each stage is announced after its command went out and before its reply was read.

    The server holds every reply until the client's callback for that stage has run: had the
    callback come after the reply was read, the server would answer "451 held" and the
    exchange would fail.
    """
    verbs = {"mail": "MAIL", "rcpt": "RCPT", "data": "DATA", "body": "."}
    hold = {verb: threading.Event() for verb in verbs.values()}
    seen: list[str] = []
    with scripted(hold=hold) as server:
        host = smtplib.SMTP("127.0.0.1", server.port, timeout=10)

        def note(stage: str) -> None:
            seen.append(stage)
            if stage in verbs:
                hold[verbs[stage]].set()

        assert (
            send_split(host, "x@example.be", ["jan@example.be"], MESSAGE, while_waiting=note) == {}
        )
        host.quit()
    assert seen == ["mail", "rcpt", "data", "body-next", "body"]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_e4_each_message_is_recorded_sent_before_the_next_one_is_accepted(app, smtp, concurrency):
    """The worker records message k while message k+1 is under way, never later.

    When the server receives a message's body (``handle_DATA``), every message it accepted
    before must already be marked sent in the database: at most one accepted message is ever
    unrecorded, so a crash repeats at most one (catalogue E4). With several connections too:
    their sender loops take turns for the bodies (``Worker.acceptance``).
    """
    total = 12
    with app.app_context():
        for i in range(total):
            outbox.enqueue(
                "test", addresses.parse(f"e4-{i}@example.be"), "en", context={"address": "x"}
            )
        db.session.commit()
    unrecorded: list[int] = []
    original = smtp.handler.handle_DATA

    async def check(server, session, envelope):
        accepted_before = len(smtp.handler.messages)
        with app.app_context():
            marked = db.session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status == OutboxStatus.SENT)
            )
            db.session.remove()
        unrecorded.append(accepted_before - marked)
        return await original(server, session, envelope)

    smtp.handler.handle_DATA = check
    with app.app_context():
        report = outbox.Worker(batch_size=3, concurrency=concurrency).run(once=True)
    assert report.sent == total
    assert len(unrecorded) == total
    assert max(unrecorded) == 0, unrecorded
    with app.app_context():
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status == OutboxStatus.SENT)
            )
            == total
        )

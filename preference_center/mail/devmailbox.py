"""The development mailbox: an SMTP catcher writing to a Maildir in the instance folder.

``make run`` starts it when no MAIL_SERVER is configured, so a newcomer sees every email
the service sends, links clickable, at /dev/mailbox, and nothing leaves the machine.
"""

from __future__ import annotations

import mailbox
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from flask import Flask


def maildir_path(app: Flask) -> Path:
    return Path(app.instance_path) / "dev-mailbox"


def open_maildir(app: Flask) -> mailbox.Maildir:
    path = maildir_path(app)
    # Made here rather than by Maildir(create=True), which skips cur/new/tmp when the folder
    # itself exists already (an empty folder left by an earlier run).
    for folder in ("tmp", "new", "cur"):
        (path / folder).mkdir(mode=0o700, parents=True, exist_ok=True)
    return mailbox.Maildir(path, factory=None, create=False)


class MaildirHandler:
    """aiosmtpd handler that keeps every message it receives."""

    def __init__(self, maildir: mailbox.Maildir) -> None:
        self.maildir = maildir

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        del message["X-Envelope-To"]
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.maildir.add(message.as_bytes())
        return "250 Message accepted for delivery"


def messages(app: Flask) -> list[tuple[str, EmailMessage]]:
    """Every captured message, newest first, with its Maildir key."""
    box = open_maildir(app)
    found = []
    for key in box.iterkeys():  # iterating a Mailbox yields messages, not keys
        with box.get_file(key) as handle:
            parsed = message_from_bytes(handle.read(), policy=policy.default)
        found.append((key, parsed))
    found.sort(key=lambda item: _date(item[1]), reverse=True)
    return found


def _date(message: EmailMessage) -> float:
    date = message["Date"]
    try:
        return date.datetime.timestamp() if date else 0.0
    except (AttributeError, ValueError):
        return 0.0


def get(app: Flask, key: str) -> EmailMessage | None:
    box = open_maildir(app)
    if key not in box:
        return None
    with box.get_file(key) as handle:
        return message_from_bytes(handle.read(), policy=policy.default)


def serve(app: Flask, host: str, port: int) -> Any:
    """Start the SMTP catcher in a thread and return its controller (``.stop()`` ends it)."""
    from aiosmtpd.controller import Controller

    controller = Controller(MaildirHandler(open_maildir(app)), hostname=host, port=port)
    controller.start()
    return controller

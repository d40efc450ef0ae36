"""SMTP delivery through Flask-Mail, hardened, and a classification of what went wrong.

Flask-Mail 0.10 opens ``smtplib.SMTP`` without a timeout and calls ``starttls()`` without an
SSL context, which in smtplib means *no certificate verification*. ``SMTPConnection`` below
replaces how the connection is opened, and sends the outbox's ready-made bytes with smtplib
itself (the same bytes and envelope Flask-Mail's own ``send`` would give).
"""

from __future__ import annotations

import enum
import re
import smtplib
import ssl
from types import TracebackType

import flask_mail
from flask import current_app

#: Addresses Flask-Mail's sanitize_address returns unchanged: ASCII, no name, no quoting.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+\Z")


class SMTPConnection(flask_mail.Connection):
    """A Flask-Mail connection with a socket timeout and verified TLS (catalogue E2, E6)."""

    def __init__(self) -> None:
        super().__init__(current_app.extensions["mail"])
        self._envelope_from: dict[str | tuple[str, str], str] = {}

    def configure_host(self) -> smtplib.SMTP | smtplib.SMTP_SSL:
        config = current_app.config
        timeout = float(config["MAIL_TIMEOUT"])
        context = ssl.create_default_context(cafile=config.get("MAIL_SSL_CA_FILE"))
        host: smtplib.SMTP | smtplib.SMTP_SSL
        if self.mail.use_ssl:
            host = smtplib.SMTP_SSL(
                self.mail.server, self.mail.port, timeout=timeout, context=context
            )
        else:
            host = smtplib.SMTP(self.mail.server, self.mail.port, timeout=timeout)
        try:
            if self.mail.use_tls:
                host.starttls(context=context)
            if self.mail.username and self.mail.password:
                host.login(self.mail.username, self.mail.password)
        except BaseException:
            host.close()
            raise
        return host

    def deliver(self, message: flask_mail.Message, raw: bytes) -> None:
        """Send ``message``, whose bytes are ``raw``, over this connection with smtplib directly.

        Flask-Mail's ``send`` checks the headers a second time and re-parses the sender and every
        recipient for each message, which together cost about as much as the exchange itself. The bytes on the wire are the same: the envelope sender
        is Flask-Mail's, computed once per sender; recipients already in the plain ASCII
        form our addresses take (``addresses.parse``) are what Flask-Mail would have made of
        them. ``MAIL_MAX_EMAILS`` and the ``email_dispatched`` signal work as before.
        """
        assert self.host is not None, "open the connection first"
        sender = message.sender
        envelope_from = self._envelope_from.get(sender)
        if envelope_from is None:
            envelope_from = self._envelope_from[sender] = flask_mail.sanitize_address(sender)
        recipients = [
            address if _PLAIN_ADDRESS.match(address) else flask_mail.sanitize_address(address)
            for address in message.send_to
        ]
        self.host.sendmail(
            envelope_from, recipients, raw, message.mail_options, message.rcpt_options
        )
        if flask_mail.email_dispatched.receivers:
            flask_mail.email_dispatched.send(current_app._get_current_object(), message=message)
        self.num_emails += 1
        if self.num_emails == self.mail.max_emails:
            self.num_emails = 0
            self.host.quit()
            self.host = self.configure_host()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Flask-Mail calls quit(), which raises again on a connection that already broke and
        # would hide the original error.
        if self.host is not None:
            try:
                self.host.quit()
            except (smtplib.SMTPException, OSError):
                self.host.close()
            self.host = None


class Outcome(enum.Enum):
    SENT = "sent"
    RETRY = "retry"  # 4xx for this message: try it again later, keep the connection
    PERMANENT = "permanent"  # 5xx for this message: never again
    CONNECTION = "connection"  # the server or the link failed: retry later, reconnect


def classify(exc: BaseException) -> tuple[Outcome, str]:
    """Map an exception from sending one message to what the worker should do about it."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()))
        return _by_code(code, text)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        # Wrong credentials are an operator problem: back off, keep the queue (E7).
        return Outcome.CONNECTION, f"authentication failed: {exc.smtp_code}"
    if isinstance(exc, smtplib.SMTPResponseException):
        if exc.smtp_code == 421:
            return Outcome.CONNECTION, _describe(exc.smtp_code, exc.smtp_error)
        return _by_code(exc.smtp_code, exc.smtp_error)
    if isinstance(exc, (smtplib.SMTPException, OSError, ssl.SSLError)):
        return Outcome.CONNECTION, f"{type(exc).__name__}: {exc}"
    raise exc


def _by_code(code: int, text: bytes | str) -> tuple[Outcome, str]:
    outcome = Outcome.PERMANENT if 500 <= code < 600 else Outcome.RETRY
    return outcome, _describe(code, text)


def _describe(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}"[:500]

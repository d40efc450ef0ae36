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
from collections.abc import Callable, Sequence
from functools import lru_cache
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

    def deliver(
        self,
        message: flask_mail.Message,
        raw: bytes,
        *,
        while_waiting: Callable[[str], None] | None = None,
    ) -> None:
        """Send ``message``, whose bytes are ``raw``, over this connection with smtplib directly.

        Flask-Mail's ``send`` checks the headers a second time and re-parses the sender and every
        recipient for each message, which together cost about as much as the exchange itself.
        The bytes on the wire are the same: the envelope sender is Flask-Mail's, computed once
        per sender; recipients already in the plain ASCII form our addresses take
        (``addresses.parse``) are what Flask-Mail would have made of them. ``MAIL_MAX_EMAILS``
        and the ``email_dispatched`` signal work as before.

        ``while_waiting`` lets the worker use the time the server spends on each command, which
        is otherwise idle time for the worker (see :func:`send_split`).
        """
        assert self.host is not None, "open the connection first"
        if self.num_emails == self.mail.max_emails:
            # MAIL_MAX_EMAILS: a new connection before the next message, not right after the
            # last one was accepted, when a failed reconnect would fail a message already
            # sent and the worker would be holding its gate for the reconnect (outbox.py).
            self.num_emails = 0
            self.host.quit()
            self.host = self.configure_host()
        sender = message.sender
        envelope_from = self._envelope_from.get(sender)
        if envelope_from is None:
            envelope_from = self._envelope_from[sender] = flask_mail.sanitize_address(sender)
        recipients = [
            address if _PLAIN_ADDRESS.match(address) else flask_mail.sanitize_address(address)
            for address in message.send_to
        ]
        send_split(
            self.host,
            envelope_from,
            recipients,
            raw,
            message.mail_options,
            message.rcpt_options,
            while_waiting=while_waiting,
        )
        if flask_mail.email_dispatched.receivers:
            flask_mail.email_dispatched.send(current_app._get_current_object(), message=message)
        self.num_emails += 1

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


def send_split(
    host: smtplib.SMTP,
    from_addr: str,
    to_addrs: Sequence[str],
    msg: bytes,
    mail_options: Sequence[str] = (),
    rcpt_options: Sequence[str] = (),
    *,
    while_waiting: Callable[[str], None] | None = None,
) -> dict[str, tuple[int, bytes]]:
    """``smtplib.SMTP.sendmail`` with points where the caller may work while the server does.

    The same commands, replies, exceptions and connection handling as ``sendmail`` (Python
    3.11; the tests hold the two to the same transcript), written out because ``sendmail``
    reads every reply as soon as it has sent the command and offers no way in between.
    ``while_waiting(stage)`` is called after each command has been sent and before its reply
    is read, with the stage: ``"mail"``, ``"rcpt"`` (once per recipient), ``"data"``, then
    ``"body"`` once the message and its final dot are on the wire. One more call,
    ``"body-next"``, comes after the server's 354 and just before the body is sent: the last
    moment before the server can accept the message. This is not SMTP pipelining: each
    command is still sent only after the previous reply has been read.
    """
    wait = while_waiting or _no_work
    host.ehlo_or_helo_if_needed()
    esmtp_opts = []
    if host.does_esmtp:
        if host.has_extn("size"):
            esmtp_opts.append(f"size={len(msg)}")
        esmtp_opts.extend(mail_options)
    optionlist = ""
    if esmtp_opts:
        if any(option.lower() == "smtputf8" for option in esmtp_opts):
            if not host.has_extn("smtputf8"):
                raise smtplib.SMTPNotSupportedError("SMTPUTF8 not supported by server")
            host.command_encoding = "utf-8"
        optionlist = " " + " ".join(esmtp_opts)
    host.putcmd("mail", f"FROM:{_quoted(from_addr)}{optionlist}")
    wait("mail")
    code, resp = host.getreply()
    if code != 250:
        _end_transaction(host, code)
        raise smtplib.SMTPSenderRefused(code, resp, from_addr)
    refused: dict[str, tuple[int, bytes]] = {}
    rcpt_list = ""
    if rcpt_options and host.does_esmtp:
        rcpt_list = " " + " ".join(rcpt_options)
    for address in to_addrs:
        host.putcmd("rcpt", f"TO:{_quoted(address)}{rcpt_list}")
        wait("rcpt")
        code, resp = host.getreply()
        if code not in (250, 251):
            refused[address] = (code, resp)
        if code == 421:
            host.close()
            raise smtplib.SMTPRecipientsRefused(refused)
    if len(refused) == len(to_addrs):
        host._rset()
        raise smtplib.SMTPRecipientsRefused(refused)
    host.putcmd("data")
    wait("data")
    code, resp = host.getreply()
    if code != 354:
        # sendmail's data() raises SMTPDataError here without resetting the transaction.
        raise smtplib.SMTPDataError(code, resp)
    body = smtplib._quote_periods(msg)  # type: ignore[attr-defined]
    if body[-2:] != smtplib.bCRLF:
        body += smtplib.bCRLF
    wait("body-next")
    host.send(body + b"." + smtplib.bCRLF)
    wait("body")
    code, resp = host.getreply()
    if code != 250:
        _end_transaction(host, code)
        raise smtplib.SMTPDataError(code, resp)
    return refused


def _end_transaction(host: smtplib.SMTP, code: int) -> None:
    """As sendmail does after a refusal: hang up on a 421, otherwise RSET for the next one."""
    if code == 421:
        host.close()
    else:
        host._rset()


def _no_work(stage: str) -> None:
    pass


def _quoted(address: str) -> str:
    """``smtplib.quoteaddr``, without its full RFC 2822 parse for a plain address.

    ``quoteaddr`` runs ``email.utils.parseaddr`` on every envelope address, a few dozen
    microseconds each; for the plain form our recipients take, the result is the address in
    angle brackets, and the envelope sender (often "Name <address>") is the same for every
    message, hence the cache.
    """
    if _PLAIN_ADDRESS.match(address):
        return f"<{address}>"
    return _quoteaddr(address)


@lru_cache(maxsize=64)
def _quoteaddr(address: str) -> str:
    return smtplib.quoteaddr(address)


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

"""Turn an outbox row into a MIME message: templates in the recipient's language, safe headers.

Templates live in ``templates/email/<name>/`` as ``subject.txt``, ``body.txt`` and optionally
``body.html``. A template may need values that only exist at send time (a token whose
lifetime starts when the email leaves, for instance): see ``builders.py``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import formataddr, formatdate, getaddresses, make_msgid
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import flask_mail
import idna
from flask import current_app
from jinja2 import TemplateError, TemplateNotFound

from ..i18n import email_language
from ..models import OutboxMessage
from . import templating, wire
from .builders import BUILDERS

#: CRLF on the wire; RFC 5322 allows 998 octets per line, and folding a List-Unsubscribe
#: header at 78 has broken DKIM with some signers, so only what is really long is folded.
WIRE_POLICY = compat32.clone(linesep="\r\n", max_line_length=998)

#: Longest display name put in a header; longer names are cut (catalogue E9).
MAX_DISPLAY_NAME = 78


class BadHeaderError(flask_mail.BadHeaderError):
    """A header value would contain a line break: refused before anything is sent."""


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str | None
    language: str
    headers: dict[str, str] = field(default_factory=dict)


class MissingUnsubscribe(Exception):
    """A marketing email without its List-Unsubscribe data or visible link (B12)."""


def render(row: OutboxMessage) -> Rendered:
    """Render ``row`` in its recipient's language, or whole in English if that fails (E10)."""
    language = email_language(row.language)
    context = dict(row.context or {})
    context.update(
        recipient_name=row.to_name,
        site_name=current_app.config["SITE_NAME"],
        language=language,
    )
    builder = BUILDERS.get(row.template)
    if builder is not None:
        context.update(builder(row, language))
    try:
        rendered = _render(row.template, language, context)
    except TemplateNotFound:
        raise
    except TemplateError:
        if language == "en":
            raise
        current_app.logger.exception(
            "email template %r failed in %r; sending it in English", row.template, language
        )
        rendered = _render(row.template, "en", {**context, "language": "en"})
    if row.category == "marketing":
        rendered = _with_unsubscribe(rendered, context)
    return rendered


def _with_unsubscribe(rendered: Rendered, context: dict[str, Any]) -> Rendered:
    """RFC 8058 headers plus a visible link: Gmail and Yahoo require both (B2, B12).

    ``List-Unsubscribe`` holds one HTTPS URL (and a mailto where a mailbox is configured),
    on one line under 998 octets: folding it has broken DKIM with some signers (B11).
    """
    url = context.get("unsubscribe_url")
    if not url or (
        not url.startswith("https://") and current_app.config["PREFERRED_URL_SCHEME"] == "https"
    ):
        raise MissingUnsubscribe("a marketing email needs an https unsubscribe_url")
    if url not in rendered.text or (rendered.html is not None and url not in rendered.html):
        raise MissingUnsubscribe("the unsubscribe link must be visible in every body")
    targets = [f"<{url}>"]
    mailbox = current_app.config.get("UNSUBSCRIBE_MAILBOX")
    if mailbox:
        subject = quote(f"unsubscribe {context.get('unsubscribe_token', '')}".strip())
        targets.append(f"<mailto:{mailbox}?subject={subject}>")
    header = ", ".join(targets)
    if len("List-Unsubscribe: ") + len(header) > 998:
        raise MissingUnsubscribe("List-Unsubscribe would not fit on one line")
    headers = {
        "List-Unsubscribe": header,
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    return Rendered(rendered.subject, rendered.text, rendered.html, rendered.language, headers)


def _render(template: str, language: str, context: dict[str, Any]) -> Rendered:
    with templating.email_context(language, context) as values:
        subject = templating.render(f"email/{template}/subject.txt", values)
        text = templating.render(f"email/{template}/body.txt", values)
        try:
            html: str | None = templating.render(f"email/{template}/body.html", values)
        except TemplateNotFound:
            html = None
    # A subject is one line, whatever the template's whitespace.
    return Rendered(" ".join(subject.split()), text, html, language)


class OutboxMail(flask_mail.Message):
    """Flask-Mail's message with the header handling we need.

    Flask-Mail 0.10 checks only some headers for CR/LF, converts IDN domains with the IDNA 2003
    codec and folds every header at 78 characters. Here recipients are already IDNA 2008 ASCII
    (``addresses.parse``), every header is checked, and the bytes are written by ``wire.py``
    (or the compat32 generator) with lines folded only past 998 octets.
    """

    def __init__(
        self,
        *,
        to_name: str | None,
        message_id: str,
        subject: str = "",
        recipients: list[str] | None = None,
        body: str | None = None,
        html: str | None = None,
        sender: str | tuple[str, str] | None = None,
        reply_to: str | None = None,
        date: float | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        # Flask-Mail's own __init__ is not called: it mints a Message-ID with make_msgid(),
        # whose socket.getfqdn() is a reverse DNS lookup for every message, only for the row's
        # stable one to replace it. Its attributes are set here instead; a test checks the two
        # lists stay the same.
        sender = sender or current_app.extensions["mail"].default_sender
        if isinstance(sender, tuple):
            sender = f"{sender[0]} <{sender[1]}>"
        self.recipients = list(recipients or [])
        self.subject = subject
        self.sender = sender
        self.reply_to = reply_to
        self.cc = []
        self.bcc = []
        self.body = body
        self.alts = {}
        self.html = html
        self.date = date
        self.msgId = message_id
        self.charset = None
        self.extra_headers = extra_headers
        self.mail_options = []
        self.rcpt_options = []
        self.attachments = []
        self.to_name = to_name

    def all_headers(self) -> dict[str, str]:
        """Every header as it will be written, computed once per message."""
        cached = getattr(self, "_headers", None)
        if cached is not None:
            return cached
        headers = {
            "Subject": self.subject or "",
            "From": _sender(self.sender),
            "To": _format_address(self.to_name, self.recipients[0]),
            "Date": formatdate(self.date or time.time(), localtime=False),
            "Message-ID": self.msgId,
        }
        if self.reply_to:
            headers["Reply-To"] = str(self.reply_to)
        headers.update(self.extra_headers or {})
        self._headers = headers
        return headers

    def has_bad_headers(self) -> bool:
        return any(_has_line_break(k) or _has_line_break(v) for k, v in self.all_headers().items())

    def as_bytes(self) -> bytes:
        """The message as sent; DKIM-signed when a key is configured (B11)."""
        if self.has_bad_headers():
            raise BadHeaderError("a header value contains a line break")
        headers = {name: _encoded(value) for name, value in self.all_headers().items()}
        # Written directly in the common case; the generator folds what is too long (wire.py).
        raw = wire.write(headers, self.body or "", self.html)
        if raw is None:
            raw = self._message(headers).as_bytes(policy=WIRE_POLICY)
        return dkim_sign(raw)

    def _message(self, headers: dict[str, str] | None = None) -> Message:  # type: ignore[override]
        # Built with the compat32 MIME classes and pre-encoded headers: the modern EmailMessage
        # API parses every header through the header registry, which cost more than the rest of
        # delivery together (docs/benchmarks.md). The wire format is the same.
        if headers is None:
            if self.has_bad_headers():
                raise BadHeaderError("a header value contains a line break")
            headers = {name: _encoded(value) for name, value in self.all_headers().items()}
        text = MIMEText(self.body or "", "plain", "utf-8")
        message: Message
        if self.html:
            message = MIMEMultipart("alternative")
            message.attach(text)
            message.attach(MIMEText(self.html, "html", "utf-8"))
        else:
            message = text
        for name, value in headers.items():
            message[name] = value
        return message


def _encoded(value: str) -> str:
    """A header value as written: RFC 2047 encoded words when it is not ASCII."""
    return value if value.isascii() else Header(value, "utf-8").encode()


def build(row: OutboxMessage, rendered: Rendered) -> OutboxMail:
    """The message for ``row``; raises :class:`BadHeaderError` before anything leaves."""
    return OutboxMail(
        subject=rendered.subject,
        recipients=[row.to_address],
        body=rendered.text,
        html=rendered.html,
        sender=current_app.config["MAIL_DEFAULT_SENDER"],
        to_name=row.to_name,
        message_id=row.message_id,
        extra_headers={"Content-Language": rendered.language, **rendered.headers},
    )


def new_message_id() -> str:
    """A Message-ID in the sender's domain, minted once per outbox row."""
    return make_msgid(domain=sender_domain())


def sender_domain() -> str:
    sender = current_app.config["MAIL_DEFAULT_SENDER"]
    # Keyed on the setting itself (a list from JSON settings becomes a tuple to be hashable),
    # so a changed sender is followed at once.
    return _domain_of(sender if isinstance(sender, str) else tuple(sender))


@lru_cache(maxsize=16)
def _domain_of(sender: str | tuple[str, ...]) -> str:
    """The sender's domain in ASCII; one sender, normally, and parsing and IDNA-encoding it
    for every Message-ID cost about as much as one of a confirmation's statements."""
    address = getaddresses([sender])[0][1] if isinstance(sender, str) else sender[1]
    domain = address.rpartition("@")[2] or "localhost"
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        return "localhost"


@lru_cache(maxsize=16)  # one sender, normally: parsing it cost as much as a template
def _sender(sender: str | tuple[str, str]) -> str:
    if isinstance(sender, tuple):
        return _format_address(*sender)
    name, address = getaddresses([sender])[0]
    return _format_address(name or None, address)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _format_address(name: str | None, address: str) -> str:
    if _has_line_break(address):
        raise BadHeaderError("line break in an address")
    if not name:
        return address
    # Control characters never belong in a name; long names are cut, not refused (E9).
    clean = _CONTROL.sub(" ", name).strip()[:MAX_DISPLAY_NAME]
    # RFC 2047-encoded when it is not ASCII, quoted when it needs to be.
    return formataddr((clean, address), charset="utf-8")


def _has_line_break(value: object) -> bool:
    text = str(value)
    return "\r" in text or "\n" in text


#: Headers our DKIM signature covers; the List-* pair must be among them (RFC 8058 §4).
DKIM_HEADERS = (
    b"from", b"to", b"subject", b"date", b"message-id", b"content-type", b"mime-version",
    b"content-language", b"list-unsubscribe", b"list-unsubscribe-post",
)  # fmt: skip


def dkim_sign(raw: bytes) -> bytes:
    """Prepend a DKIM-Signature when DKIM_PRIVATE_KEY and DKIM_SELECTOR are set."""
    config = current_app.config
    key, selector = config.get("DKIM_PRIVATE_KEY"), config.get("DKIM_SELECTOR")
    if not (key and selector):
        return raw
    import dkim

    pem = key.encode() if "-----BEGIN" in key else open(key, "rb").read()  # noqa: SIM115
    domain = config.get("DKIM_DOMAIN") or sender_domain()
    present = {h for h in DKIM_HEADERS if f"\n{h.decode()}:".encode() in b"\n" + raw.lower()}
    signature = dkim.sign(
        raw,
        selector.encode(),
        domain.encode(),
        pem,
        include_headers=[h for h in DKIM_HEADERS if h in present],
    )
    return signature + raw

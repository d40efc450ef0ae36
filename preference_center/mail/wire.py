"""The bytes of an outgoing email, written directly for the one layout the outbox sends.

Every outbox email is a text part, or a text and an HTML part in ``multipart/alternative``,
both UTF-8, with a handful of headers that are already RFC 2047-encoded where needed. The
``email`` package's compat32 generator writes that layout by folding every header through
``email.header.Header`` and compiling a regular expression per boundary, which cost about as
much as the SMTP exchange itself (docs/benchmarks.md). :func:`write` produces the generator's
bytes, byte for byte apart from the random boundary, for the cases where nothing needs
folding, and returns None for anything else so that the caller uses the generator; the tests
compare both outputs.
"""

from __future__ import annotations

import random
import re
import sys
from email import charset as email_charset

#: A header line (name, ": ", value) longer than this is folded by the generator (RFC 5322).
MAX_LINE = 998

#: Header values that the generator writes unchanged: printable ASCII and spaces only. Tabs
#: and other control characters go through its folding code, so they take the slow path.
_PLAIN_VALUE = re.compile(r"[ -~]*\Z")

#: What the generator turns into CRLF in a body (``email.generator.NLCRE``).
_LINE_BREAKS = re.compile(r"\r\n|\r|\n")

#: Boundaries look like the generator's: 15 "=", a zero-padded random number, "==".
_BOUNDARY_DIGITS = len(repr(sys.maxsize - 1))

CRLF = b"\r\n"


def write(headers: dict[str, str], text: str, html: str | None) -> bytes | None:
    """The message with ``headers`` (already encoded) and its bodies, or None to fall back.

    The part layout and header order are the compat32 MIME classes': Content-Type and
    MIME-Version first, then ``headers`` in order; each part has its own Content-Type,
    MIME-Version and Content-Transfer-Encoding.
    """
    if not _utf8_bodies_unencoded():
        return None
    head = []
    for name, value in headers.items():
        if len(name) + 2 + len(value) > MAX_LINE or not _PLAIN_VALUE.match(value):
            return None
        head.append(f"{name}: {value}\r\n")
    own_headers = "".join(head).encode("ascii")
    text_headers, text_body = _part("plain", text)
    if not html:  # OutboxMail sends an empty HTML body as a text-only message too
        return text_headers + own_headers + CRLF + text_body
    html_headers, html_body = _part("html", html)
    boundary = _boundary(text_body, html_body)
    delimiter = b"--" + boundary
    return b"".join(
        (
            b'Content-Type: multipart/alternative; boundary="' + boundary + b'"\r\n',
            b"MIME-Version: 1.0\r\n",
            own_headers,
            CRLF,
            delimiter + CRLF,
            text_headers + CRLF + text_body,
            CRLF + delimiter + CRLF,
            html_headers + CRLF + html_body,
            CRLF + delimiter + b"--" + CRLF,
        )
    )


def _utf8_bodies_unencoded() -> bool:
    """Whether the MIME classes write UTF-8 bodies as 7bit/8bit rather than base64.

    Flask-Mail registers UTF-8 that way when it is imported, which is what the wire format has
    always been; should that registration ever change, the generator decides again.
    """
    return email_charset.CHARSETS.get("utf-8", (None, None, None))[1] is None


def _part(subtype: str, body: str) -> tuple[bytes, bytes]:
    """(headers, body) of one UTF-8 text part, as MIMEText and the generator write them."""
    encoded = _LINE_BREAKS.sub("\r\n", body).encode("utf-8")
    transfer = "7bit" if body.isascii() else "8bit"
    head = (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "MIME-Version: 1.0\r\n"
        f"Content-Transfer-Encoding: {transfer}\r\n"
    )
    return head.encode("ascii"), encoded


def _boundary(*bodies: bytes) -> bytes:
    """A random boundary that no body contains (the generator checks lines; this is stricter)."""
    while True:
        token = random.randrange(sys.maxsize)  # noqa: S311 (uniqueness, not secrecy)
        boundary = ("=" * 15 + f"{token:0{_BOUNDARY_DIGITS}d}" + "==").encode("ascii")
        if not any(b"--" + boundary in body for body in bodies):
            return boundary

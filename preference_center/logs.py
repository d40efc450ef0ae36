"""Log hygiene: no token and no full email address ever reaches a log (catalogue A13).

Access logs print request paths, and our links carry signed tokens in the path; application
logs may mention addresses. The filter rewrites both before any handler sees the record.
"""

from __future__ import annotations

import logging
import re

from flask import Flask

#: itsdangerous tokens: three base64url parts joined by dots (payload, timestamp, signature).
TOKEN = re.compile(r"[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{16,}")
EMAIL = re.compile(r"([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*@([A-Za-z0-9.\-]+)")

LOGGERS = ("werkzeug", "gunicorn.access", "gunicorn.error")


def scrub(text: str) -> str:
    """``/confirm/eyJ…abc`` -> ``/confirm/[token]``; ``jan@example.be`` -> ``j***@example.be``."""
    return EMAIL.sub(r"\1***@\2", TOKEN.sub("[token]", text))


class ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install(app: Flask) -> None:
    """Attach the filter to the app's logger and to the servers' access loggers."""
    scrub_filter = ScrubFilter()
    for logger in (app.logger, *(logging.getLogger(name) for name in LOGGERS)):
        if not any(isinstance(f, ScrubFilter) for f in logger.filters):
            logger.addFilter(scrub_filter)

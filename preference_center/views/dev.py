"""/dev/mailbox: read what the service sent, in development only.

Registered only when ``DEV_MAILBOX`` is on, which ``config.load`` forces off unless debug is
on: in production these URLs do not exist (404).
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, abort, current_app, render_template
from markupsafe import Markup, escape

from ..mail import devmailbox

bp = Blueprint("dev", __name__, url_prefix="/dev")

_URL = re.compile(r"https?://[^\s<>\"']+")


def _linkify(text: str) -> Markup:
    """Escape a plain-text body and make its links clickable."""
    parts, last = [], 0
    for match in _URL.finditer(text):
        parts.append(escape(text[last : match.start()]))
        url = escape(match.group(0))
        parts.append(Markup(f'<a href="{url}">{url}</a>'))  # noqa: S704 - url is escaped
        last = match.end()
    parts.append(escape(text[last:]))
    return Markup("").join(parts)


@bp.get("/mailbox")
def mailbox() -> str:
    return render_template("dev/mailbox.html", messages=devmailbox.messages(current_app))


@bp.get("/mailbox/<key>")
def message(key: str) -> str:
    found = devmailbox.get(current_app, key)
    if found is None:
        abort(404)
    text = found.get_body(preferencelist=("plain",))
    html = found.get_body(preferencelist=("html",))
    return render_template(
        "dev/message.html",
        key=key,
        message=found,
        text=_linkify(text.get_content()) if text else "",
        has_html=html is not None,
        headers=list(found.items()),
    )


@bp.get("/mailbox/<key>/html")
def message_html(key: str) -> Response:
    found = devmailbox.get(current_app, key)
    html = found.get_body(preferencelist=("html",)) if found else None
    if html is None:
        abort(404)
    response = Response(html.get_content(), mimetype="text/html")
    # Shown inside the mailbox page only; no script runs in it.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
    )
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response

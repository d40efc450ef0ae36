"""The export API for the mailing list: change feed, snapshots, sync status, OpenAPI.

Authentication is a bearer token in the ``Authorization`` header and nowhere else: a token
in a URL ends up in proxy logs and browser history, so a request carrying one in its query
string is refused outright, even when the header is right too (L1). Every use is audited.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from importlib import resources
from typing import Any

from flask import Blueprint, Response, current_app, g, request, stream_with_context
from flask_babel import gettext as _

from ..errors import api_error
from ..extensions import client_ip, csrf, db, limiter
from ..models import ApiToken
from ..services import api_tokens, feed, snapshot, sync, topics

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)  # no cookies, no forms: the bearer token is the credential

#: Query parameters that look like a credential; their presence alone refuses the request.
CREDENTIAL_PARAMETERS = frozenset(
    {"token", "access_token", "api_key", "apikey", "key", "auth", "authorization", "bearer"}
)


def _rate_key() -> str:
    header = request.headers.get("Authorization", "")
    return "api:" + api_tokens.digest(header)[:16] if header else "api-ip:" + client_ip()


def authenticated(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if CREDENTIAL_PARAMETERS & {name.lower() for name in request.args}:
            return api_error(
                400, _("Send the API token in the Authorization header, never in the URL.")
            )
        scheme, _sep, secret = request.headers.get("Authorization", "").partition(" ")
        token = api_tokens.authenticate(secret.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            response = api_error(401, _("A valid API token is needed (Authorization: Bearer)."))
            response.headers["WWW-Authenticate"] = 'Bearer realm="preference-center"'
            return response
        g.api_token = token
        return view(*args, **kwargs)

    return limiter.limit(lambda: current_app.config["API_RATE_LIMIT"], key_func=_rate_key)(wrapped)


def _token() -> ApiToken:
    token: ApiToken = g.api_token
    return token


@bp.get("/changes")
@authenticated
def changes() -> Response:
    """Every change in the token's topics after ``after``, oldest first."""
    config = current_app.config
    try:
        after = feed.decode_cursor(request.args.get("after"))
    except feed.CursorInvalid:
        return api_error(400, _("This cursor is not one we handed out."), field="after")
    limit_arg = request.args.get("limit", str(config["API_PAGE_SIZE"]))
    maximum = int(config["API_PAGE_SIZE_MAX"])
    if not limit_arg.isdigit() or not 1 <= int(limit_arg) <= maximum:
        return api_error(
            400, _("The limit must be a number from 1 to %(max)d.", max=maximum), field="limit"
        )
    token = _token()
    page = feed.read_page(after, int(limit_arg), token.topic_ids)
    api_tokens.record_use(token, "api.changes", ip=client_ip(), acknowledged=after)
    return _json({"items": page.items, "cursor": page.cursor, "has_more": page.has_more})


@bp.get("/subscribers")
@authenticated
def subscribers() -> Response:
    """A topic's confirmed subscribers, streamed, with the feed's cursor at that moment."""
    token = _token()
    fmt = request.args.get("format", "ndjson")
    if fmt not in snapshot.FORMATS:
        return api_error(
            400, _("The format must be one of: %(formats)s.", formats=", ".join(snapshot.FORMATS))
        )
    try:
        topic = topics.get(request.args.get("topic", ""))
    except topics.TopicError:
        return api_error(404, _("There is no topic with this name."), field="topic")
    if token.topic_ids is not None and topic.id not in token.topic_ids:
        return api_error(403, _("This API token may not read this topic."), field="topic")
    links = feed.Links()
    opened = snapshot.open_snapshot(topic)
    api_tokens.record_use(token, "api.subscribers", ip=client_ip(), acknowledged=None)
    db.session.remove()  # the snapshot has its own connection; give the session's back
    response = Response(
        stream_with_context(snapshot.stream(opened, fmt, links)),
        mimetype=snapshot.MEDIA_TYPES[fmt],
    )
    response.headers["X-Feed-Cursor"] = opened.cursor
    if fmt == "csv":
        response.headers["Content-Disposition"] = f'attachment; filename="{opened.slug}.csv"'
    return response


@bp.get("/sync/status")
@authenticated
def sync_status() -> Response:
    """Each consumer's lag; 503 when a removal waited too long, for the monitoring (L3)."""
    report = sync.status()
    api_tokens.record_use(_token(), "api.sync-status", ip=client_ip(), acknowledged=None)
    response = _json(report)
    if not report["ok"]:
        response.status_code = 503
    return response


@bp.get("/openapi.json")
def openapi() -> Response:
    """The API's description (kept in the repository beside the code it describes)."""
    return Response(
        resources.files("preference_center").joinpath("openapi.json").read_text("utf-8"),
        mimetype="application/json",
    )


def _json(payload: dict[str, Any]) -> Response:
    return Response(
        json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
        mimetype="application/json",
    )

"""Error pages in the visitor's language, with the right status (catalogue I3)."""

from __future__ import annotations

from flask import (
    Flask,
    Response,
    has_request_context,
    jsonify,
    make_response,
    render_template,
    request,
)
from flask.globals import request_ctx
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

TITLES = {
    400: _l("This request could not be understood"),
    403: _l("You are not allowed to see this page"),
    404: _l("This page does not exist"),
    405: _l("This action is not possible here"),
    413: _l("This file is too large"),
    429: _l("Too many requests"),
    500: _l("Something went wrong on our side"),
    503: _l("This service is not available at the moment"),
}
EXPLANATIONS = {
    400: _l("Please check the address or the form and try again."),
    403: _l("If you think this is a mistake, please contact us."),
    404: _l("The link may be incomplete or out of date. Please check it, or go to the start page."),
    405: _l("Please use the buttons on our pages rather than typing the address."),
    413: _l("Please send a smaller file."),
    429: _l("Please wait a moment before you try again."),
    500: _l("We have been told about the problem. Please try again in a few minutes."),
    503: _l("Please try again later."),
}
PAGE_EXPIRED_TITLE = _l("This page has expired")
PAGE_EXPIRED = _l(
    "For your security, forms are only valid for a limited time. Please reload the page and "
    "submit it again; nothing has been changed."
)


def render_error(code: int, title: object = None, explanation: object = None) -> tuple[str, int]:
    # A request refused before routing (a Host not in TRUSTED_HOSTS) has no URL adapter, so
    # the page must not build links: it gets a standalone template.
    routable = has_request_context() and request_ctx.url_adapter is not None
    return (
        render_template(
            "errors/error.html" if routable else "errors/standalone.html",
            code=code,
            title=title or TITLES.get(code, TITLES[500]),
            explanation=explanation or EXPLANATIONS.get(code, EXPLANATIONS[500]),
        ),
        code,
    )


def api_error(code: int, message: object = None, **extra: object) -> Response:
    """The API's errors: JSON, translated like the pages (Accept-Language decides)."""
    response = jsonify(
        error={"status": code, "message": str(message or TITLES.get(code, TITLES[500])), **extra}
    )
    response.status_code = code
    return response


def _for_api() -> bool:
    return has_request_context() and request.path.startswith("/api/")


def register(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError) -> tuple[str, int]:
        # A missing or expired form token, e.g. after a key rotation (catalogue A11, B9):
        # say so plainly instead of Flask-WTF's English one-liner.
        return render_error(400, PAGE_EXPIRED_TITLE, PAGE_EXPIRED)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        code = error.code or 500
        if code not in TITLES:
            code = 400 if 400 <= code < 500 else 500
        response = api_error(code) if _for_api() else make_response(render_error(code))
        # Keep what the exception says beyond the body: Allow on 405, Retry-After on 429.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(InternalServerError)
    def server_error(error: InternalServerError) -> Response | tuple[str, int]:
        return api_error(500) if _for_api() else render_error(500)

"""Response headers that every page gets (catalogue B8, B10, I7)."""

from __future__ import annotations

from flask import Response, request

# No third-party origin anywhere: a token in a URL can't leak to a CDN through Referer.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


def add_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    # same-origin, not no-referrer: Flask-WTF's HTTPS CSRF check needs the Referer (B8).
    headers.setdefault("Referrer-Policy", "same-origin")
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
    if response.mimetype == "text/html":
        # Pages may carry personal data or tokens: never keep them in a shared cache.
        headers.setdefault("Cache-Control", "no-store")
    return response

"""What every page behind a subscriber's link shares: the blueprint, the words for codes, and
how a link is checked (a problem with one is a page that offers a fresh link, never an error
that tells who is subscribed)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    make_response,
    render_template,
    request,
)
from flask_babel import format_date, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from ... import tokens
from ...extensions import client_ip
from ...forms import (
    NO_CSRF_FIELD,
    ButtonForm,
    LeaveReasonForm,
)
from ...i18n import NATIVE_NAMES, remember_subscriber_language
from ...models import Contact, utcnow
from ...services import preferences, subscriptions
from ...services.preferences import LinkedContact

bp = Blueprint("preferences", __name__)

#: Frequencies a topic may offer, with the words a person reads.
FREQUENCIES = {
    "every-issue": _l("Every issue"),
    "weekly": _l("Once a week"),
    "monthly": _l("Once a month, as a digest"),
}
STATUSES = {
    "subscribed": _l("subscribed"),
    "unsubscribed": _l("unsubscribed"),
    "pending": _l("waiting for your confirmation"),
}


@bp.app_context_processor
def helpers() -> dict[str, Any]:
    """Words for codes, for the preference pages."""

    def source_sentence(contact: Contact | LinkedContact) -> str:
        when = format_date(contact.created_at, "long")
        if contact.source.value == "form":
            return _("You gave it to us yourself, on our website, on %(date)s.", date=when)
        if contact.source.value == "import":
            return _("It was added from a list of contacts on %(date)s.", date=when)
        return _("It was added by our team on %(date)s.", date=when)

    return {
        "frequency_label": lambda code: FREQUENCIES.get(code, code),
        "status_label": lambda code: STATUSES.get(code, code),
        "language_name": lambda code: NATIVE_NAMES.get(code, code),
        "source_sentence": source_sentence,
        "tomorrow": (utcnow().date() + timedelta(days=1)).isoformat(),
    }


def request_client() -> subscriptions.Client:
    return subscriptions.Client(ip=client_ip(), user_agent=request.headers.get("User-Agent"))


def link_problem(title: str, lines: list[str], status: int, resend: str | None = None) -> Response:
    return make_response(
        render_template(
            "public/notice.html",
            title=title,
            lines=lines,
            form=ButtonForm(),
            manage_resend_token=resend,
            show_signup=resend is None,
        ),
        status,
    )


def invalid_link() -> Response:
    return link_problem(
        _("This link is not valid"),
        [_("The link may be incomplete: please copy the whole link from the email.")],
        400,
    )


def change_link_gone() -> Response:
    return link_problem(
        _("This link no longer works"),
        [_("Please ask for the change again from your preferences page.")],
        400,
    )


def verified_payload(
    purpose: tokens.Purpose, token: str, problem: Any = invalid_link
) -> dict[str, Any]:
    """The verified payload of ``token``, or the page ``problem()`` (no state changes)."""
    try:
        return tokens.load(purpose, token)
    except tokens.TokenError:
        abort(problem())


def linked_contact(token: str) -> LinkedContact:
    """The contact of a manage link, or a page that offers a fresh link (no enumeration)."""
    try:
        payload = tokens.load(tokens.Purpose.MANAGE, token)
    except tokens.TokenExpired as exc:
        payload = exc.payload
        abort(expired_manage_link(payload))
    except tokens.TokenError:
        abort(invalid_link())
    try:
        contact = preferences.contact_for_link(payload)
    except preferences.LinkRevoked:
        abort(expired_manage_link(payload))
    remember_subscriber_language(contact.language)
    return contact


def expired_manage_link(payload: dict[str, Any]) -> Response:
    subscriber = payload.get("c") if isinstance(payload, dict) else None
    resend = (
        tokens.make(tokens.Purpose.RESEND, {"c": subscriber})
        if isinstance(subscriber, str)
        else None
    )
    return link_problem(
        _("This link no longer works"),
        [
            _(
                "Links to your preferences stop working after a while, or when you change your email address."
            ),
            _("We can email you a fresh link."),
        ],
        410,
        resend,
    )


def safe_next(target: str | None, fallback: str) -> str:
    """``target`` if it is a path on this site, else ``fallback`` (no open redirect, I6)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return fallback
    if "\\" in target or any(ord(ch) < 32 for ch in target):
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return fallback
    return target


def left_page(manage_token: str | None) -> str:
    return render_template(
        "preferences/left.html", reason_fields=reason_fields(), manage_token=manage_token
    )


def reason_fields() -> Markup:
    """The "why are you leaving?" fields, rendered once per language and application.

    Every one-click unsubscribe shows them, and they are the same every time: nothing is
    chosen yet, and the CSRF field is the page's own. Building the form and rendering its
    lazily translated choices cost about a tenth of a one-click request.
    """
    rendered: dict[str, Markup] = current_app.extensions.setdefault("reason_fields", {})
    language = str(get_locale())
    fields = rendered.get(language)
    if fields is None:
        # render_template escaped every value it put in: the result is markup already.
        fields = rendered[language] = Markup(  # noqa: S704
            render_template(
                "preferences/_reason_fields.html",
                reason_form=LeaveReasonForm(meta=NO_CSRF_FIELD),
            )
        )
    return fields

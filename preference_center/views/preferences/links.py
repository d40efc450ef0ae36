"""Links by email ("lost your emails?", a fresh link), the RFC 8058 one-click unsubscribe and
"never contact me" from a permission email."""

from __future__ import annotations

from typing import Any

from flask import (
    abort,
    render_template,
    request,
)
from flask_babel import gettext as _
from sqlalchemy import select

from ... import tokens
from ...extensions import csrf, db
from ...forms import (
    ButtonForm,
    ManageLinkForm,
)
from ...i18n import remember_subscriber_language
from ...models import Contact
from ...services import leaving, preferences, repermission
from ..public import email_limit, failed_token_limit, token_limit
from .common import (
    bp,
    left_page,
    request_client,
    verified_payload,
)

# --- links by email -------------------------------------------------------------------------


@bp.post("/manage")
@email_limit
def request_link() -> Any:
    """ "Lost your emails?": the same answer whatever the address (no enumeration)."""
    form = ManageLinkForm()
    if form.validate_on_submit():
        preferences.send_manage_link(form.email.data)
    return render_template(
        "public/notice.html",
        title=_("Please check your inbox"),
        lines=[
            _("If this address receives our emails, we have sent it a link to your preferences.")
        ],
    )


@bp.post("/manage/resend")
@email_limit
@token_limit
def resend_link() -> Any:
    if not ButtonForm().validate_on_submit():
        abort(400)
    try:
        payload = tokens.load(tokens.Purpose.RESEND, request.form.get("token"))
    except tokens.TokenError:
        abort(400)
    subscriber = payload.get("c")
    if isinstance(subscriber, str):
        preferences.resend_manage_link(subscriber)
    return render_template(
        "public/notice.html",
        title=_("Please check your inbox"),
        lines=[
            _("If this address receives our emails, we have sent it a link to your preferences.")
        ],
    )


# --- RFC 8058 one-click unsubscribe ---------------------------------------------------------


def _unsubscribe_payload(token: str) -> dict[str, Any]:
    return verified_payload(tokens.Purpose.UNSUBSCRIBE, token)


@bp.route("/u/<token>", methods=["GET", "HEAD"])
@token_limit
def one_click(token: str) -> Any:
    """A person who clicks the link sees a button; a scanner that fetches it changes nothing."""
    payload = _unsubscribe_payload(token)
    contact = _unsubscribe_contact(payload)
    if contact is not None:
        remember_subscriber_language(contact.language)
    return render_template("preferences/unsubscribe.html", token=token, found=contact is not None)


@bp.post("/u/<token>")
@csrf.exempt  # RFC 8058: the POST carries no cookie and no CSRF token; the URL's token is the proof
@failed_token_limit
def one_click_post(token: str) -> Any:
    # Exactly one key/value pair, urlencoded or multipart; anything else is not a one-click
    # request and is refused, so the endpoint can't be used to post arbitrary forms (B4).
    if request.form.to_dict(flat=False) != {"List-Unsubscribe": ["One-Click"]} or request.files:
        abort(400)
    payload = _unsubscribe_payload(token)
    subscriber, topic = payload.get("c"), payload.get("t")
    leaver = None
    if isinstance(subscriber, str):
        leaver = leaving.unsubscribe_by_link(
            subscriber,
            channel="one-click",
            client=request_client(),
            topic_ids=[topic] if isinstance(topic, int) else None,
        )
    manage_token = None
    if leaver is not None:
        remember_subscriber_language(leaver.language)
        manage_token = tokens.make(tokens.Purpose.MANAGE, preferences.manage_payload(leaver))
    # 200, never a redirect (RFC 8058 §3.2), and the same page when repeated (idempotent).
    return left_page(manage_token=manage_token), 200


def _unsubscribe_contact(payload: dict[str, Any]) -> Contact | None:
    return db.session.scalar(select(Contact).where(Contact.public_id == payload.get("c")))


# --- "No, never contact me" from a permission email -------------------------------------------


def _refusal(token: str) -> str:
    return str(verified_payload(tokens.Purpose.REFUSE, token).get("r"))


@bp.route("/never/<token>", methods=["GET", "HEAD"])
@token_limit
def refuse(token: str) -> Any:
    _refusal(token)
    return render_template("preferences/refuse.html", form=ButtonForm())


@bp.post("/never/<token>")
@token_limit
def refuse_post(token: str) -> Any:
    request_id = _refusal(token)
    if not ButtonForm().validate_on_submit():
        abort(400)
    repermission.refuse(request_id, request_client())
    return render_template(
        "public/notice.html",
        title=_("We will never contact you again"),
        lines=[
            _("We deleted your address and everything we had about you."),
            _(
                "We keep only a coded fingerprint of your address, which cannot be turned back into it, so that no list we import can ever add you again. If you subscribe again yourself, it is removed."
            ),
        ],
    )

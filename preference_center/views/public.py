"""Public pages: the signup form, the confirmation link, "this was not me".

Every link in an email opens a page with a button; only the POST changes anything, so mail
scanners that fetch links confirm nothing (catalogue B1).
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from flask import Blueprint, Response, abort, current_app, make_response, render_template, request
from flask_babel import get_locale
from flask_babel import gettext as _
from wtforms.fields.choices import SelectChoice

from .. import addresses, tokens
from ..extensions import client_ip, csrf, limiter
from ..forms import ButtonForm, ManageLinkForm, SignupForm, address_error
from ..i18n import remember_subscriber_language, validated
from ..models import RequestStatus
from ..services import consent, preferences, subscriptions, system, topics

bp = Blueprint("public", __name__)

SOURCE_LABEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

#: Every route that can cause an email shares one per-IP budget (catalogue C1, C6).
email_limit = limiter.shared_limit(
    lambda: current_app.config["SIGNUP_RATE_LIMIT"], scope="emails", methods=["POST"]
)
#: Pages reached by a token: enough for people, far too few to guess tokens (A14).
token_limit = limiter.shared_limit(lambda: current_app.config["TOKEN_RATE_LIMIT"], scope="tokens")
#: For the one-click unsubscribe: mailbox providers post many genuine unsubscribes from one
#: address, and an unsubscribe must never be lost, so only failures count against the budget.
failed_token_limit = limiter.shared_limit(
    lambda: current_app.config["TOKEN_RATE_LIMIT"],
    scope="tokens",
    deduct_when=lambda response: response.status_code >= 400,
)


def _client() -> subscriptions.Client:
    return subscriptions.Client(ip=client_ip(), user_agent=request.headers.get("User-Agent"))


def _campaign() -> tuple[list[Any], str | None]:
    """The topics offered and the source label, preset by the URL (a QR code at a booth)."""
    preset = request.args.get("topics", "")
    source = request.args.get("source") or None
    if source is not None and not SOURCE_LABEL.match(source):
        abort(400)
    if preset:
        try:
            offered = subscriptions.public_topics_by_slug(preset.split(","))
        except subscriptions.UnknownTopic:
            abort(400)  # never an unknown or private topic, whatever the URL says (C7)
    else:
        offered = topics.public_labels()
    return offered, source


def _signup_form(offered: list[Any], source: str | None) -> SignupForm:
    form = SignupForm()
    form.topics.choices = [SelectChoice(t.slug, t.name(str(get_locale()))) for t in offered]
    if not form.is_submitted():
        form.language.data = str(get_locale())
        form.source.data = source or ""
        form.started.data = tokens.make(tokens.Purpose.FORM, {"f": 1})
    return form


def _render_signup(form: SignupForm, offered: list[Any], status: int = 200) -> tuple[str, int]:
    language = str(get_locale())
    try:
        text = consent.shown(language)
    except consent.ConsentTextMissing:
        current_app.logger.error("no consent text for %r: run `flask consent-texts seed`", language)
        abort(503)
    form.consent_text_id.data = str(text.id)
    descriptions = {t.slug: t.description(language) for t in offered}
    return (
        render_template(
            "public/index.html",
            form=form,
            consent_text=text,
            descriptions=descriptions,
            manage_form=ManageLinkForm(),
        ),
        status,
    )


@bp.get("/")
def index() -> tuple[str, int]:
    offered, source = _campaign()
    return _render_signup(_signup_form(offered, source), offered)


def _looks_like_a_bot(form: SignupForm) -> bool:
    """Honeypot filled, form never shown, sent too fast or too late (catalogue C5)."""
    if form.website.data:
        return True
    try:
        seconds = tokens.age(tokens.Purpose.FORM, form.started.data)
    except tokens.TokenError:
        return True
    return seconds < float(current_app.config["SIGNUP_MIN_SECONDS"])


@bp.post("/")
@email_limit
@csrf.exempt  # the form checks its own token, after the bot checks (see below)
def signup() -> tuple[str, int]:
    offered, source = _campaign()
    form = _signup_form(offered, source)
    # A bot gets the same acknowledgement as a person and nothing is stored or sent, so it
    # learns nothing. A person whose session expired has a genuine form: they see it again.
    if _looks_like_a_bot(form):
        current_app.logger.info("signup form rejected as automated from %s", client_ip())
        return render_template("public/check_inbox.html"), 200
    if not form.validate():
        if "csrf_token" in form.errors:
            form.csrf_token.errors = [
                _("This page had expired. Please check your choices and send the form again.")
            ]
        return _render_signup(form, offered, 400)
    label = form.source.data or None
    if label is not None and not SOURCE_LABEL.match(label):
        abort(400)
    try:
        consent_text_id = int(form.consent_text_id.data)
    except (TypeError, ValueError):
        abort(400)
    try:
        subscriptions.request_subscription(
            form.email.data,
            topic_slugs=form.topics.data,
            language=validated(form.language.data) or str(get_locale()),
            consent_text_id=consent_text_id,
            client=_client(),
            first_name=form.first_name.data,
            source_label=label,
        )
    except addresses.InvalidAddress as exc:
        form.email.errors = [address_error(exc.reason)]
        return _render_signup(form, offered, 400)
    except (subscriptions.UnknownTopic, LookupError):
        abort(400)
    # The same page whatever happened: new, pending, subscribed or suppressed (C3, C4).
    return render_template("public/check_inbox.html"), 200


# --- links from the confirmation email ------------------------------------------------------


def _request_id(purpose: tokens.Purpose, token: str) -> str:
    """The request a link is for, or an error page (invalid: 400; expired: 410 with resend)."""
    try:
        payload = tokens.load(purpose, token)
    except tokens.TokenExpired as exc:
        abort(_expired_page(exc.payload))
    except tokens.TokenError:
        abort(_invalid_page())
    request_id = payload.get("r")
    if not isinstance(request_id, str):
        abort(_invalid_page())
    return request_id


def _invalid_page() -> Response:
    return make_response(
        render_template(
            "public/notice.html",
            title=_("This link is not valid"),
            lines=[
                _("The link may be incomplete: please copy the whole link from the email."),
                _("If you want to subscribe, you can simply fill in the form again."),
            ],
            show_signup=True,
        ),
        400,
    )


def _expired_page(payload: dict[str, Any]) -> Response:
    request_id = payload.get("r") if isinstance(payload, dict) else None
    can_resend = False
    if isinstance(request_id, str):
        try:
            found = subscriptions.find_request(request_id)
            can_resend = found.status is RequestStatus.PENDING
            remember_subscriber_language(found.language)
        except subscriptions.RequestNotFound:
            pass
    return make_response(
        render_template(
            "public/notice.html",
            title=_("This link has expired"),
            lines=[_("For your security, confirmation links are only valid for a limited time.")],
            resend_token=tokens.make(tokens.Purpose.RESEND, {"r": request_id})
            if can_resend
            else None,
            form=ButtonForm(),
            show_signup=not can_resend,
        ),
        410,
    )


@bp.route("/confirm/<token>", methods=["GET", "HEAD"])
@token_limit
def confirm(token: str) -> Any:
    """Show what would be confirmed and a button; a GET never confirms (B1)."""
    request_id = _request_id(tokens.Purpose.CONFIRM, token)
    try:
        state = subscriptions.describe(request_id)
    except subscriptions.RequestNotFound:
        abort(_invalid_page())
    except subscriptions.RequestExpired as exc:
        abort(_expired_page({"r": exc.public_id}))
    remember_subscriber_language(state.contact.language)
    if state.state is not RequestStatus.PENDING:
        return _state_page(state)
    return render_template(
        "public/confirm.html",
        masked=addresses.mask(state.contact.email_display),
        topics=state.topics,
    )


@bp.post("/confirm/<token>")
@token_limit
def confirm_post(token: str) -> Any:
    # The CSRF token was checked before this ran: CSRFProtect covers every POST that is not
    # exempt, and this one never is (test_b7). No ButtonForm is built to check it again: it
    # would only sign a fresh token for a page that shows no form.
    request_id = _request_id(tokens.Purpose.CONFIRM, token)
    try:
        result = subscriptions.confirm(request_id, _client())
    except subscriptions.RequestNotFound:
        abort(_invalid_page())
    except subscriptions.RequestExpired as exc:
        abort(_expired_page({"r": exc.public_id}))
    remember_subscriber_language(result.contact.language)
    return _state_page(result)


def _state_page(result: subscriptions.ConfirmResult) -> Any:
    """What the request means now: just confirmed, confirmed earlier, or no longer valid.

    A link confirmed earlier shows today's state, not the old one: after an unsubscribe it
    says so, and subscribing again takes the form, never the old link (A7, A8).
    """
    if result.state is RequestStatus.CONFIRMED:
        # Just confirmed: the topics are known; only an older link needs today's state.
        current = (
            result.topics
            if result.newly_confirmed
            else subscriptions.subscribed_topics(result.contact.id, result.topics)
        )
        if current:
            return render_template(
                "public/confirmed.html",
                topics=result.topics if result.newly_confirmed else current,
                newly=result.newly_confirmed,
                first_name=result.contact.first_name,
                # Whoever holds the confirmation link holds the welcome email's link too.
                manage_token=tokens.make(
                    tokens.Purpose.MANAGE, preferences.manage_payload(result.contact)
                ),
            )
        return render_template(
            "public/notice.html",
            title=_("This link was already used"),
            lines=[
                _("You confirmed this subscription earlier and have unsubscribed since."),
                _("If you want to subscribe again, please fill in the form."),
            ],
            show_signup=True,
        )
    return render_template(
        "public/notice.html",
        title=_("This request was withdrawn"),
        lines=[
            _(
                "This subscription request is no longer valid, for instance because you "
                "unsubscribed after it was made. Nothing has been changed."
            ),
            _("If you want to subscribe again, please fill in the form."),
        ],
        show_signup=True,
    )


@bp.post("/confirm/resend")
@email_limit
@token_limit
def resend() -> Any:
    """Send a fresh confirmation link for an expired one (A2)."""
    form = ButtonForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        payload = tokens.load(tokens.Purpose.RESEND, request.form.get("token"))
    except tokens.TokenError:
        abort(_invalid_page())
    request_id = payload.get("r")
    if isinstance(request_id, str):
        with contextlib.suppress(subscriptions.RequestNotFound):
            subscriptions.resend_confirmation(request_id)
    # The same answer whether or not an email left: nothing to learn from it.
    return render_template("public/check_inbox.html")


@bp.route("/not-me/<token>", methods=["GET", "HEAD"])
@token_limit
def not_me(token: str) -> Any:
    request_id = _request_id(tokens.Purpose.NOT_ME, token)
    try:
        found = subscriptions.find_request(request_id)
    except subscriptions.RequestNotFound:
        return _not_me_done()
    remember_subscriber_language(found.language)
    if found.status is not RequestStatus.PENDING:
        return _not_me_done()
    return render_template(
        "public/not_me.html",
        form=ButtonForm(),
        masked=addresses.mask(found.contact.email_display),
        days=current_app.config["NOT_ME_BLOCK_DAYS"],
    )


@bp.post("/not-me/<token>")
@token_limit
def not_me_post(token: str) -> Any:
    request_id = _request_id(tokens.Purpose.NOT_ME, token)
    if not ButtonForm().validate_on_submit():
        abort(400)
    with contextlib.suppress(subscriptions.RequestNotFound):
        subscriptions.not_me(request_id)
    return _not_me_done()


def _not_me_done() -> str:
    return render_template(
        "public/notice.html",
        title=_("Thank you, we removed this request"),
        lines=[
            _(
                "We deleted the subscription request and will not send a subscription email "
                "to this address for %(days)s days.",
                days=current_app.config["NOT_ME_BLOCK_DAYS"],
            ),
            _("You do not need to do anything else."),
        ],
    )


@bp.get("/health")
def health() -> dict[str, object]:
    """Liveness for load balancers and monitoring: the database answers."""
    return system.health()

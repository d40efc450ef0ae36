"""The preference center: everything a subscriber can do from a link in any of our emails.

No login: the link's signed "manage" token identifies the person. Every change is a POST with
a CSRF token, except the RFC 8058 one-click unsubscribe, which is authenticated by its own
token and carries no cookie by design.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import force_locale, format_date
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from .. import addresses, inventory, tokens
from ..extensions import client_ip, csrf
from ..forms import (
    ButtonForm,
    EmailChangeForm,
    LeaveReasonForm,
    ManageLinkForm,
    PreferencesForm,
)
from ..i18n import remember_subscriber_language, validated
from ..models import ConsentAction, Contact, utcnow
from ..services import choices, consent, leaving, preferences, repermission, subscriptions
from ..services.preferences import LinkedContact
from .public import email_limit, failed_token_limit, token_limit

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
    from ..i18n import NATIVE_NAMES

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


def _client() -> subscriptions.Client:
    return subscriptions.Client(ip=client_ip(), user_agent=request.headers.get("User-Agent"))


def _link_problem(title: str, lines: list[str], status: int, resend: str | None = None) -> Response:
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


def _invalid_link() -> Response:
    return _link_problem(
        _("This link is not valid"),
        [_("The link may be incomplete: please copy the whole link from the email.")],
        400,
    )


def _change_link_gone() -> Response:
    return _link_problem(
        _("This link no longer works"),
        [_("Please ask for the change again from your preferences page.")],
        400,
    )


def _payload(purpose: tokens.Purpose, token: str, problem: Any = _invalid_link) -> dict[str, Any]:
    """The verified payload of ``token``, or the page ``problem()`` (no state changes)."""
    try:
        return tokens.load(purpose, token)
    except tokens.TokenError:
        abort(problem())


def _contact(token: str) -> LinkedContact:
    """The contact of a manage link, or a page that offers a fresh link (no enumeration)."""
    try:
        payload = tokens.load(tokens.Purpose.MANAGE, token)
    except tokens.TokenExpired as exc:
        payload = exc.payload
        abort(_expired_manage_link(payload))
    except tokens.TokenError:
        abort(_invalid_link())
    try:
        contact = preferences.contact_for_link(payload)
    except preferences.LinkRevoked:
        abort(_expired_manage_link(payload))
    remember_subscriber_language(contact.language)
    return contact


def _expired_manage_link(payload: dict[str, Any]) -> Response:
    subscriber = payload.get("c") if isinstance(payload, dict) else None
    resend = (
        tokens.make(tokens.Purpose.RESEND, {"c": subscriber})
        if isinstance(subscriber, str)
        else None
    )
    return _link_problem(
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


# --- the page -------------------------------------------------------------------------------


def _render_page(
    token: str, contact: LinkedContact, form: PreferencesForm | None = None, status: int = 200
) -> Any:
    language = contact.language
    form = form or PreferencesForm(
        data={
            "first_name": contact.first_name,
            "language": contact.language,
            "paused_until": contact.paused_until.date() if contact.paused_until else None,
        }
    )
    form.version.data = str(contact.prefs_version)
    text = consent.shown(str(validated(request.args.get("lang")) or language))
    form.consent_text_id.data = str(text.id)
    return (
        render_template(
            "preferences/manage.html",
            token=token,
            contact=contact,
            form=form,
            choices=choices.choices(contact),
            consent_text=text,
            masked=addresses.mask(contact.email_display),
            email_form=EmailChangeForm(),
            next=request.args.get("next", ""),
        ),
        status,
    )


@bp.route("/manage/<token>", methods=["GET", "HEAD"])
@token_limit
def manage(token: str) -> Any:
    contact = _contact(token)
    return _render_page(token, contact)


@bp.post("/manage/<token>")
@token_limit
def save(token: str) -> Any:
    contact = _contact(token)
    form = PreferencesForm()
    if not form.validate_on_submit():
        return _render_page(token, contact, form, 400)
    chosen: dict[str, str | None] = {}
    for key in request.form:
        if key.startswith("topic-"):
            slug = key.removeprefix("topic-")
            chosen[slug] = request.form.get(f"frequency-{slug}") or None
    try:
        updated = choices.update_preferences(
            contact.id,
            expected_version=int(form.version.data or 0),
            subscribed=chosen,
            language=form.language.data,
            first_name=form.first_name.data,
            paused_until=form.paused_until.data,
            consent_text_id=int(form.consent_text_id.data or 0),
            client=_client(),
        )
    except choices.ChangedElsewhere:
        # Nothing is merged: the person sees today's state and decides again (F3).
        flash(
            _(
                "Your preferences were changed elsewhere in the meantime, for instance in another tab. Nothing was saved: please check them and save again."
            ),
            "error",
        )
        return redirect(url_for(".manage", token=token)), 303
    except (preferences.InvalidChoice, ValueError):
        abort(400)
    # Said in the language just chosen, which the next page will speak.
    with force_locale(validated(session.get("lang")) or updated.language):
        flash(_("Your preferences are saved."), "success")
    target = safe_next(request.form.get("next"), url_for(".manage", token=token))
    return redirect(target), 303


@bp.post("/manage/<token>/leave")
@token_limit
def leave(token: str) -> Any:
    """Unsubscribe from everything (a POST with CSRF, from the preference page)."""
    contact = _contact(token)
    if not ButtonForm().validate_on_submit():
        abort(400)
    subscriptions.unsubscribe_all(contact.id, channel="preference-page", client=_client())
    return _left_page(unsubscribe_token=None, manage_token=token)


def _left_page(unsubscribe_token: str | None, manage_token: str | None) -> str:
    return render_template(
        "preferences/left.html",
        reason_form=LeaveReasonForm(),
        manage_token=manage_token,
    )


@bp.post("/leave-reason")
def leave_reason() -> Any:
    """The optional "why are you leaving?", stored without any link to the person."""
    form = LeaveReasonForm()
    if form.validate_on_submit() and form.reason.data:
        preferences.record_leave_reason(
            form.reason.data,
            form.comment.data,
            str(validated(request.args.get("language")) or "en"),
        )
    return render_template(
        "public/notice.html",
        title=_("Thank you for telling us"),
        lines=[_("Your answer helps us send better emails.")],
    )


@bp.post("/manage/<token>/email")
@token_limit
@email_limit
def change_email(token: str) -> Any:
    contact = _contact(token)
    form = EmailChangeForm()
    if not form.validate_on_submit():
        flash(
            form.new_email.errors[0]
            if form.new_email.errors
            else _("Please check the address or the form and try again."),
            "error",
        )
        return redirect(url_for(".manage", token=token) + "#email"), 303
    try:
        preferences.request_email_change(contact.id, form.new_email.data)
    except addresses.InvalidAddress:
        abort(400)
    flash(
        _("We sent a confirmation link to your new address. Until you click it, nothing changes."),
        "success",
    )
    return redirect(url_for(".manage", token=token)), 303


@bp.route("/email-change/<token>", methods=["GET", "HEAD"])
@token_limit
def confirm_email_change(token: str) -> Any:
    request_id = _email_change_request(token)
    return render_template(
        "preferences/confirm_email.html", form=ButtonForm(), request_id=request_id
    )


@bp.post("/email-change/<token>")
@token_limit
def confirm_email_change_post(token: str) -> Any:
    request_id = _email_change_request(token)
    if not ButtonForm().validate_on_submit():
        abort(400)
    try:
        contact = preferences.confirm_email_change(request_id, _client())
    except preferences.AddressTaken:
        return _link_problem(
            _("This address is already registered"),
            [
                _(
                    "The new address already receives our emails. Use the link in one of those emails to manage it."
                )
            ],
            409,
        )
    except preferences.LinkRevoked:
        response = _change_link_gone()
        response.status_code = 410
        return response
    remember_subscriber_language(contact.language)
    manage_token = tokens.make(tokens.Purpose.MANAGE, preferences.manage_payload(contact))
    flash(_("Your email address has been changed."), "success")
    return redirect(url_for(".manage", token=manage_token)), 303


def _email_change_request(token: str) -> str:
    return str(_payload(tokens.Purpose.EMAIL_CHANGE, token, _change_link_gone).get("r"))


# --- what we hold, download, forget ---------------------------------------------------------


@bp.get("/manage/<token>/data")
@token_limit
def what_we_hold(token: str) -> Any:
    contact = _contact(token)
    data = preferences.export_data(contact.id)
    return render_template(
        "preferences/data.html",
        token=token,
        contact=contact,
        fields=inventory.FIELDS,
        data=data,
        history=_history_in_words(contact),
        months=current_app.config["CONSENT_CLIENT_DATA_MONTHS"],
        button=ButtonForm(),
    )


def _history_in_words(contact: LinkedContact) -> list[tuple[Any, str]]:
    """The consent history as sentences a person understands."""
    from sqlalchemy import select

    from ..extensions import db
    from ..models import ConsentEvent, Topic

    events = db.session.scalars(
        select(ConsentEvent)
        .where(ConsentEvent.contact_id == contact.id)
        .order_by(ConsentEvent.occurred_at, ConsentEvent.id)
    ).all()
    names = {t.id: t.name(contact.language) for t in db.session.scalars(select(Topic))}
    channels = {
        "web-form": _("on our website"),
        "preference-page": _("on your preferences page"),
        "one-click": _("with a one-click unsubscribe link"),
        "email-change": _("by confirming your new address"),
    }
    sentences = {
        ConsentAction.REQUESTED: _("You asked to receive “%(topic)s” %(channel)s."),
        ConsentAction.CONFIRMED: _(
            "You confirmed that you want to receive “%(topic)s” %(channel)s."
        ),
        ConsentAction.WITHDRAWN: _("You unsubscribed from “%(topic)s” %(channel)s."),
        ConsentAction.UPDATED: _("You changed your preferences %(channel)s."),
    }
    lines = []
    for event in events:
        template = sentences.get(event.action)
        if template is None:
            continue
        lines.append(
            (
                event.occurred_at,
                template
                % {
                    "topic": names.get(event.topic_id, "?"),
                    "channel": channels.get(event.channel, event.channel),
                },
            )
        )
    return lines


@bp.post("/manage/<token>/export")
@token_limit
@email_limit
def request_export(token: str) -> Any:
    contact = _contact(token)
    if not ButtonForm().validate_on_submit():
        abort(400)
    preferences.request_export(contact.id)
    flash(
        _("We sent you an email with a link to download your data."),
        "success",
    )
    return redirect(url_for(".what_we_hold", token=token)), 303


def _export_contact(token: str) -> LinkedContact:
    try:
        payload = tokens.load(tokens.Purpose.EXPORT, token)
        return preferences.contact_for_link(payload)
    except (tokens.TokenError, preferences.LinkRevoked):
        abort(
            _link_problem(
                _("This link no longer works"),
                [
                    _(
                        "Download links work for a limited time. Ask for a new one on your preferences page."
                    )
                ],
                410,
            )
        )


@bp.get("/export/<token>")
@token_limit
def export(token: str) -> Any:
    contact = _export_contact(token)
    remember_subscriber_language(contact.language)
    return render_template("preferences/export.html", token=token)


@bp.get("/export/<token>/my-data.<fmt>")
@token_limit
def export_file(token: str, fmt: str) -> Response:
    contact = _export_contact(token)
    data = preferences.export_data(contact.id)
    preferences.log_export(contact.id, fmt, client_ip())
    if fmt == "json":
        body, mimetype = json.dumps(data, ensure_ascii=False, indent=2), "application/json"
    elif fmt == "csv":
        body, mimetype = preferences.export_csv(data), "text/csv"
    else:
        abort(404)
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f"attachment; filename=my-data.{fmt}"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/manage/<token>/forget", methods=["GET", "HEAD"])
@token_limit
def forget(token: str) -> Any:
    contact = _contact(token)
    return render_template(
        "preferences/forget.html",
        token=token,
        masked=addresses.mask(contact.email_display),
        form=ButtonForm(),
    )


@bp.post("/manage/<token>/forget")
@token_limit
def forget_post(token: str) -> Any:
    contact = _contact(token)
    if not ButtonForm().validate_on_submit():
        abort(400)
    preferences.erase(contact.id, _client())
    return render_template(
        "public/notice.html",
        title=_("Your data has been erased"),
        lines=[
            _("We deleted your address, your choices and everything linked to you."),
            _(
                "We keep only a coded fingerprint of your address, which cannot be turned back into it, so that no list we import can ever add you again. If you subscribe again yourself, it is removed."
            ),
        ],
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
    return _payload(tokens.Purpose.UNSUBSCRIBE, token)


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
            client=_client(),
            topic_ids=[topic] if isinstance(topic, int) else None,
        )
    manage_token = None
    if leaver is not None:
        remember_subscriber_language(leaver.language)
        manage_token = tokens.make(tokens.Purpose.MANAGE, preferences.manage_payload(leaver))
    # 200, never a redirect (RFC 8058 §3.2), and the same page when repeated (idempotent).
    return _left_page(unsubscribe_token=token, manage_token=manage_token), 200


def _unsubscribe_contact(payload: dict[str, Any]) -> Contact | None:
    from sqlalchemy import select

    from ..extensions import db

    return db.session.scalar(select(Contact).where(Contact.public_id == payload.get("c")))


# --- "No, never contact me" from a permission email -------------------------------------------


def _refusal(token: str) -> str:
    return str(_payload(tokens.Purpose.REFUSE, token).get("r"))


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
    repermission.refuse(request_id, _client())
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

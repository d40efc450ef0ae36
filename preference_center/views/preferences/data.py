"""What we hold about the person, the download of it (by email only, K1) and forgetting them
(K3)."""

from __future__ import annotations

import json
from typing import Any

from flask import (
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    url_for,
)
from flask_babel import gettext as _
from sqlalchemy import select

from ... import addresses, inventory, tokens
from ...extensions import client_ip, db
from ...forms import (
    ButtonForm,
)
from ...i18n import remember_subscriber_language
from ...models import ConsentAction, ConsentEvent, Topic
from ...services import preferences
from ...services.preferences import LinkedContact
from ..public import email_limit, token_limit
from .common import (
    bp,
    link_problem,
    linked_contact,
    request_client,
)

# --- what we hold, download, forget ---------------------------------------------------------


@bp.get("/manage/<token>/data")
@token_limit
def what_we_hold(token: str) -> Any:
    contact = linked_contact(token)
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
    contact = linked_contact(token)
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
            link_problem(
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
    contact = linked_contact(token)
    return render_template(
        "preferences/forget.html",
        token=token,
        masked=addresses.mask(contact.email_display),
        form=ButtonForm(),
    )


@bp.post("/manage/<token>/forget")
@token_limit
def forget_post(token: str) -> Any:
    contact = linked_contact(token)
    if not ButtonForm().validate_on_submit():
        abort(400)
    preferences.erase(contact.id, request_client())
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

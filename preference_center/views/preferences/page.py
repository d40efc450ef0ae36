"""The preference page itself: see and save the choices, leave everything, say why, and move
to another address (confirmed by the new address itself, D10)."""

from __future__ import annotations

from typing import Any

from flask import (
    abort,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import force_locale
from flask_babel import gettext as _

from ... import addresses, tokens
from ...forms import (
    NO_CSRF_FIELD,
    ButtonForm,
    EmailChangeForm,
    LeaveReasonForm,
    PreferencesForm,
)
from ...i18n import remember_subscriber_language, validated
from ...services import choices, consent, preferences, subscriptions
from ...services.preferences import LinkedContact
from ..public import email_limit, token_limit
from .common import (
    bp,
    change_link_gone,
    left_page,
    link_problem,
    linked_contact,
    request_client,
    safe_next,
    verified_payload,
)

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
        },
        meta=NO_CSRF_FIELD,
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
            email_form=EmailChangeForm(meta=NO_CSRF_FIELD),
            next=request.args.get("next", ""),
        ),
        status,
    )


@bp.route("/manage/<token>", methods=["GET", "HEAD"])
@token_limit
def manage(token: str) -> Any:
    contact = linked_contact(token)
    return _render_page(token, contact)


@bp.post("/manage/<token>")
@token_limit
def save(token: str) -> Any:
    contact = linked_contact(token)
    form = PreferencesForm(meta=NO_CSRF_FIELD)
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
            client=request_client(),
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
    contact = linked_contact(token)
    if not ButtonForm().validate_on_submit():
        abort(400)
    subscriptions.unsubscribe_all(contact.id, channel="preference-page", client=request_client())
    return left_page(manage_token=token)


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
    contact = linked_contact(token)
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
        contact = preferences.confirm_email_change(request_id, request_client())
    except preferences.AddressTaken:
        return link_problem(
            _("This address is already registered"),
            [
                _(
                    "The new address already receives our emails. Use the link in one of those emails to manage it."
                )
            ],
            409,
        )
    except preferences.LinkRevoked:
        response = change_link_gone()
        response.status_code = 410
        return response
    remember_subscriber_language(contact.language)
    manage_token = tokens.make(tokens.Purpose.MANAGE, preferences.manage_payload(contact))
    flash(_("Your email address has been changed."), "success")
    return redirect(url_for(".manage", token=manage_token)), 303


def _email_change_request(token: str) -> str:
    return str(verified_payload(tokens.Purpose.EMAIL_CHANGE, token, change_link_gone).get("r"))

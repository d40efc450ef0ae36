"""The admin's sync page: is the mailing list in step, and the webhooks that push to it."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import PasswordField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length, Optional

from ..extensions import db
from ..forms import ButtonForm
from ..models import Role, Topic
from ..services import api_tokens, feed, sync, webhooks
from .admin import actor, requires

bp = Blueprint("webhooks", __name__, url_prefix="/admin/sync")


class WebhookForm(FlaskForm):
    url = StringField(_l("Address (URL)"), validators=[DataRequired(), Length(max=2000)])
    secret = PasswordField(
        _l("Shared secret"), validators=[DataRequired(), Length(min=16, max=200)]
    )
    topics = SelectMultipleField(_l("Topics (none: all)"), validators=[Optional()])


class ReplayForm(FlaskForm):
    cursor = StringField(_l("From cursor (empty: from the beginning)"), validators=[Length(max=64)])


def _topic_choices() -> list[tuple[str, str]]:
    return [(t.slug, t.slug) for t in db.session.scalars(select(Topic).order_by(Topic.position))]


@bp.route("/", methods=["GET", "POST"])
@requires(Role.ADMIN)
def index() -> Any:
    form = WebhookForm()
    form.topics.choices = _topic_choices()
    status = 200
    if form.validate_on_submit():
        try:
            webhooks.add(
                form.url.data,
                form.secret.data,
                api_tokens.topic_ids_for(form.topics.data or None),
                actor=actor(),
            )
        except (webhooks.WebhookError, api_tokens.UnknownTopic) as exc:
            form.url.errors = [_("This webhook cannot be added: %(reason)s", reason=str(exc))]
            status = 400
        else:
            flash(_("The webhook is added; it receives the feed from the beginning."), "success")
            return redirect(url_for(".index")), 303
    elif form.is_submitted():
        status = 400
    hooks = webhooks.listing()
    return (
        render_template(
            "admin/sync.html",
            report=sync.status(),
            tokens=api_tokens.listing(),
            hooks=hooks,
            dead={hook.id: webhooks.dead(hook.id) for hook in hooks},
            form=form,
            replay=ReplayForm(),
            encode=feed.encode_cursor,
            button=ButtonForm(),
        ),
        status,
    )


@bp.post("/webhooks/<int:webhook_id>/retry")
@requires(Role.ADMIN)
def retry(webhook_id: int) -> Any:
    if not ButtonForm().validate_on_submit():
        abort(400)
    count = webhooks.retry(webhook_id, actor())
    flash(_("%(count)d failed deliveries will be tried again.", count=count), "success")
    return redirect(url_for(".index")), 303


@bp.post("/webhooks/<int:webhook_id>/replay")
@requires(Role.ADMIN)
def replay(webhook_id: int) -> Any:
    form = ReplayForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        after = feed.decode_cursor(form.cursor.data or None)
    except feed.CursorInvalid:
        flash(_("This cursor is not one we handed out."), "error")
        return redirect(url_for(".index")), 303
    if not webhooks.replay(webhook_id, after, actor()):
        abort(404)
    flash(_("The webhook receives the feed again from that point."), "success")
    return redirect(url_for(".index")), 303


@bp.post("/webhooks/<int:webhook_id>/remove")
@requires(Role.ADMIN)
def remove(webhook_id: int) -> Any:
    if not ButtonForm().validate_on_submit():
        abort(400)
    if not webhooks.remove(webhook_id, actor()):
        abort(404)
    flash(_("The webhook is removed."), "success")
    return redirect(url_for(".index")), 303

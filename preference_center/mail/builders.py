"""Send-time context for email templates.

Some values must be made when the email leaves, not when it is queued: a confirmation link's
lifetime counts from the moment it is sent, so an email held back two days by retries still
gives the person the full week (catalogue E5). A builder may also find the email is no longer
wanted and raise :class:`SkipMessage`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import current_app, url_for
from sqlalchemy import select

from .. import addresses, tokens
from ..extensions import db
from ..models import (
    Contact,
    EmailChangeRequest,
    OutboxMessage,
    RequestStatus,
    SignupRequest,
    Topic,
    utcnow,
)

#: (row, language the email is rendered in) -> extra template variables
ContextBuilder = Callable[[OutboxMessage, str], dict[str, Any]]
BUILDERS: dict[str, ContextBuilder] = {}


class SkipMessage(Exception):
    """The email is no longer wanted (its request was confirmed, withdrawn or purged)."""


def builder(template: str) -> Callable[[ContextBuilder], ContextBuilder]:
    def register(func: ContextBuilder) -> ContextBuilder:
        BUILDERS[template] = func
        return func

    return register


@builder("confirm")
def confirmation(row: OutboxMessage, language: str) -> dict[str, Any]:
    """Mint the confirm and "not me" links now, and start the request's clock now."""
    request = db.session.scalar(
        select(SignupRequest).where(SignupRequest.public_id == row.context.get("request"))
    )
    if request is None or request.status is not RequestStatus.PENDING:
        db.session.rollback()
        raise SkipMessage("the request is no longer pending")
    now = utcnow()
    request.emailed_at = now
    request.expires_at = now + timedelta(seconds=tokens.max_age(tokens.Purpose.CONFIRM))
    context = {
        "masked_address": addresses.mask(request.contact.email_display),
        "first_name": request.first_name,
        "topic_names": topic_names(request.topic_ids, language),
        "site_url": url_for("public.index", _external=True),
        "confirm_url": url_for(
            "public.confirm",
            token=tokens.make(tokens.Purpose.CONFIRM, {"r": request.public_id}),
            _external=True,
        ),
        "not_me_url": url_for(
            "public.not_me",
            token=tokens.make(tokens.Purpose.NOT_ME, {"r": request.public_id}),
            _external=True,
        ),
        "valid_days": tokens.max_age(tokens.Purpose.CONFIRM) // 86400,
        "not_me_days": int(current_app.config["NOT_ME_BLOCK_DAYS"]),
    }
    db.session.commit()
    return context


def topic_names(topic_ids: list[int] | None, language: str) -> list[str]:
    """The names of ``topic_ids`` in ``language``, in the topics' display order."""
    topics = db.session.scalars(select(Topic).where(Topic.id.in_(topic_ids or []))).all()
    return [t.name(language) for t in sorted(topics, key=lambda t: (t.position, t.id))]


def subscriber_links(contact: Contact, topic_id: int | None = None) -> dict[str, str]:
    """The person's own preference page and one-click unsubscribe (all topics, or one)."""
    manage = tokens.make(
        tokens.Purpose.MANAGE, {"c": contact.public_id, "v": contact.manage_version}
    )
    unsubscribe = tokens.make(tokens.Purpose.UNSUBSCRIBE, {"c": contact.public_id, "t": topic_id})
    return {
        "manage_url": url_for("preferences.manage", token=manage, _external=True),
        "unsubscribe_url": url_for("preferences.one_click", token=unsubscribe, _external=True),
        "unsubscribe_token": unsubscribe,
    }


def _contact(row: OutboxMessage) -> Contact:
    contact = db.session.scalar(
        select(Contact).where(Contact.public_id == row.context.get("contact"))
    )
    if contact is None:
        db.session.rollback()
        raise SkipMessage("the contact is gone")
    return contact


@builder("welcome")
def welcome(row: OutboxMessage, language: str) -> dict[str, Any]:
    contact = _contact(row)
    context = {
        "first_name": contact.first_name,
        "topic_names": topic_names(row.context.get("topics"), language),
        "site_url": url_for("public.index", _external=True),
        **subscriber_links(contact),
    }
    db.session.commit()
    return context


@builder("manage-link")
@builder("email-change-notice")
def greeting_with_links(row: OutboxMessage, language: str) -> dict[str, Any]:
    """The person's name and own links: all the manage-link and change notices need."""
    contact = _contact(row)
    context = {"first_name": contact.first_name, **subscriber_links(contact)}
    db.session.commit()
    return context


@builder("export-link")
def export_link(row: OutboxMessage, language: str) -> dict[str, Any]:
    contact = _contact(row)
    token = tokens.make(
        tokens.Purpose.EXPORT, {"c": contact.public_id, "v": contact.manage_version}
    )
    context = {
        "first_name": contact.first_name,
        "export_url": url_for("preferences.export", token=token, _external=True),
        "valid_hours": tokens.max_age(tokens.Purpose.EXPORT) // 3600,
    }
    db.session.commit()
    return context


@builder("email-change")
def email_change(row: OutboxMessage, language: str) -> dict[str, Any]:
    request = db.session.scalar(
        select(EmailChangeRequest).where(EmailChangeRequest.public_id == row.context.get("request"))
    )
    if request is None or request.status is not RequestStatus.PENDING:
        db.session.rollback()
        raise SkipMessage("the address change is no longer pending")
    token = tokens.make(tokens.Purpose.EMAIL_CHANGE, {"r": request.public_id})
    context = {
        "first_name": request.contact.first_name,
        "new_address": addresses.mask(request.new_email_display),
        "old_address": addresses.mask(request.contact.email_display),
        "confirm_url": url_for("preferences.confirm_email_change", token=token, _external=True),
        "valid_days": tokens.max_age(tokens.Purpose.EMAIL_CHANGE) // 86400,
    }
    db.session.commit()
    return context


@builder("repermission")
@builder("repermission-reminder")
def repermission(row: OutboxMessage, language: str) -> dict[str, Any]:
    """The permission email: who we are, where the address came from, one yes, one no."""
    from ..models import ImportBatch

    request = db.session.scalar(
        select(SignupRequest).where(SignupRequest.public_id == row.context.get("request"))
    )
    if request is None or request.status is not RequestStatus.PENDING:
        db.session.rollback()
        raise SkipMessage("the request is no longer pending")
    batch = db.session.get(ImportBatch, request.import_batch_id)
    context = {
        "first_name": request.first_name,
        "event_name": batch.event_name if batch else "",
        "event_date": batch.event_date if batch else None,
        "topic_names": topic_names(request.topic_ids, language),
        "deadline": request.expires_at,
        "site_url": url_for("public.index", _external=True),
        "masked_address": addresses.mask(request.contact.email_display),
        "confirm_url": url_for(
            "public.confirm",
            token=tokens.make(tokens.Purpose.CONFIRM, {"r": request.public_id}),
            _external=True,
        ),
        "refuse_url": url_for(
            "preferences.refuse",
            token=tokens.make(tokens.Purpose.REFUSE, {"r": request.public_id}),
            _external=True,
        ),
    }
    db.session.commit()
    return context

"""Signing up: a request to subscribe, and the confirmation email it sends (double opt-in).

Every form submission runs this, so it reads and writes with Core statements built once, one
per table. The rules are those of every use case (see subscriptions.py): the contact is
inserted or locked before anything about the person is read, and the request, its ledger
rows and its email are written in one transaction.
"""

from __future__ import annotations

import enum
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from flask import current_app
from sqlalchemy import bindparam, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from .. import addresses, suppression
from ..extensions import db
from ..models import (
    ConsentAction,
    ConsentEvent,
    ConsentText,
    Contact,
    ContactSource,
    SignupRequest,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
    UTCDateTime,
    utcnow,
)
from . import outbox_rows, topics
from .topics import TopicLabel

if TYPE_CHECKING:  # annotations only: subscriptions.py imports this module
    from .subscriptions import Client

_CONTACT = Contact.__table__


class UnknownTopic(ValueError):
    """A topic that does not exist or is not public was asked for (catalogue C7)."""


class Outcome(enum.Enum):
    """What a signup did. The visitor sees the same page whatever it is (C3, C4)."""

    EMAILED = "emailed"
    ALREADY_SUBSCRIBED = "already-subscribed"
    THROTTLED = "throttled"
    BLOCKED = "blocked"


def _contact_statement(dialect: str) -> Any:
    """Insert the contact, or lock it if it exists, and return its id: one statement.

    On a conflict the row gets the lock's UPDATE that changes nothing (see lock_contact; an
    ON CONFLICT update does not apply onupdate, so updated_at is set here as the lock's
    would set it). Two signups for one new address thus make one contact and run one after
    the other (F1). public_id and the counters come from the column defaults.
    """
    statement = (postgresql if dialect == "postgresql" else sqlite).insert(_CONTACT)
    return statement.on_conflict_do_update(
        index_elements=[_CONTACT.c.email],
        set_={"hard_bounces": _CONTACT.c.hard_bounces, "updated_at": statement.excluded.updated_at},
    ).returning(_CONTACT.c.id)


_INSERT_OR_LOCK_CONTACT = {
    dialect: _contact_statement(dialect) for dialect in ("postgresql", "sqlite")
}


def _insert_or_lock_contact(
    address: addresses.Address, language: str, source: ContactSource
) -> int:
    """The contact's id, inserting it if needed, with the contact locked; safe in races (F1)."""
    dialect = "postgresql" if db.session.get_bind().dialect.name == "postgresql" else "sqlite"
    values = {
        "email": address.canonical,
        "email_display": address.display,
        "language": language,
        "source": source,
        "address_kind": address.kind,
    }
    return db.session.connection().execute(_INSERT_OR_LOCK_CONTACT[dialect], values).scalar_one()


def public_topics_by_slug(slugs: list[str]) -> list[TopicLabel]:
    """The public topics named by ``slugs``; any unknown or private one refuses them all."""
    wanted = list(dict.fromkeys(s.strip() for s in slugs if s and s.strip()))
    if not wanted:
        return []
    found = topics.public_labels_by_slug(wanted)
    if len(found) != len(wanted):
        raise UnknownTopic(", ".join(sorted(set(wanted) - {t.slug for t in found})))
    return found


def request_lifetime() -> timedelta:
    """How long a request can wait: the link's age plus the time its email may spend in retries."""
    config = current_app.config
    return timedelta(
        seconds=int(config["CONFIRM_TOKEN_MAX_AGE"]) + int(config["OUTBOX_RETRY_PERIOD"])
    )


def queue_confirmation(
    request_public_id: str,
    language: str,
    first_name: str | None,
    contact_id: int,
    address: addresses.Address,
) -> str:
    """The confirmation email of a request; returns its Message-ID (the ledger records it)."""
    return outbox_rows.queue(
        db.session.connection(),
        "confirm",
        address.ascii,
        language,
        to_name=first_name,
        context={"request": request_public_id},
        contact_id=contact_id,
        category="confirmation",
    )


def blocked(address: addresses.Address) -> bool:
    """The owner of the address said "this was not me" not long ago (see not_me)."""
    return suppression.reason(address.canonical) is SuppressionReason.NOT_ME


_TEXT = ConsentText.__table__
_REQUEST = SignupRequest.__table__
_SUBSCRIPTION = Subscription.__table__
#: Built once, like every statement of a signup: composing one costs more than running it.
_CONSENT_TEXT = select(_TEXT.c.id, _TEXT.c.language, _TEXT.c.sha256).where(
    _TEXT.c.id == bindparam("text")
)
_SUBSCRIBED_TOPICS = select(_SUBSCRIPTION.c.topic_id).where(
    _SUBSCRIPTION.c.contact_id == bindparam("contact"),
    _SUBSCRIPTION.c.status == SubscriptionStatus.SUBSCRIBED,
)
_RECENT_REQUEST = (
    select(_REQUEST.c.id)
    .where(
        _REQUEST.c.contact_id == bindparam("contact"),
        _REQUEST.c.created_at > bindparam("since", type_=UTCDateTime()),
    )
    .limit(1)
)
_INSERT_REQUEST = insert(_REQUEST).returning(_REQUEST.c.id, _REQUEST.c.public_id)
_RECORD_REQUESTED = insert(ConsentEvent.__table__).values(action=ConsentAction.REQUESTED)


def request_subscription(
    raw_email: str,
    *,
    topic_slugs: list[str],
    language: str,
    consent_text_id: int,
    client: Client,
    first_name: str | None = None,
    source_label: str | None = None,
    channel: str = "web-form",
) -> Outcome:
    """Record a signup and queue its confirmation email, unless there is nothing to confirm.

    Raises :class:`addresses.InvalidAddress`, :class:`UnknownTopic` or ``LookupError`` (no such
    consent text) before anything is written. Every form submission runs this, so it reads
    and writes with Core statements built once, one per table.
    """
    address = addresses.parse(
        raw_email, check_deliverability=current_app.config["EMAIL_CHECK_DELIVERABILITY"]
    )
    topics_asked = public_topics_by_slug(topic_slugs)
    if not topics_asked:
        raise UnknownTopic("no topic chosen")
    connection = db.session.connection()
    text = connection.execute(_CONSENT_TEXT, {"text": consent_text_id}).first()
    if text is None:
        raise LookupError("unknown consent text")

    if blocked(address):
        # The owner of the address said "not me": store nothing, send nothing.
        db.session.commit()  # reason() may have re-keyed the entry
        return Outcome.BLOCKED

    contact_id = _insert_or_lock_contact(address, language, ContactSource.FORM)
    now = utcnow()
    if blocked(address):  # a "not me" that committed while we waited for the lock
        db.session.commit()
        return Outcome.BLOCKED

    subscribed = set(connection.execute(_SUBSCRIBED_TOPICS, {"contact": contact_id}).scalars())
    wanted = [t for t in topics_asked if t.id not in subscribed]
    if not wanted:
        db.session.commit()
        return Outcome.ALREADY_SUBSCRIBED  # no email, no disclosure (C3)

    window = timedelta(seconds=int(current_app.config["CONFIRM_EMAIL_INTERVAL"]))
    since = now - window
    if connection.execute(_RECENT_REQUEST, {"contact": contact_id, "since": since}).first():
        db.session.commit()
        return Outcome.THROTTLED  # one confirmation email per address per window (C2)

    first_name = (first_name or "").strip()[:100] or None
    request = connection.execute(
        _INSERT_REQUEST,
        {
            "contact_id": contact_id,
            "topic_ids": [t.id for t in wanted],
            "language": language,
            "first_name": first_name,
            "source_label": source_label,
            "channel": channel,
            "consent_text_id": text.id,
            "expires_at": now + request_lifetime(),
        },
    ).one()
    message_id = queue_confirmation(request.public_id, language, first_name, contact_id, address)
    user_agent = client.ua()
    connection.execute(
        _RECORD_REQUESTED,
        [
            {
                "contact_id": contact_id,
                "topic_id": topic.id,
                "channel": channel,
                "ip": client.ip,
                "user_agent": user_agent,
                "language": text.language,
                "consent_text_id": text.id,
                "consent_text_sha256": text.sha256,
                "message_id": message_id,
                "request_id": request.id,
                "import_batch_id": None,
            }
            for topic in wanted
        ],
    )
    db.session.commit()
    return Outcome.EMAILED

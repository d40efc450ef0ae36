"""Double opt-in: request, confirm, "this was not me", resend, and leaving.

Every function here is one transaction. It writes the state change, its consent-ledger rows and
its outbox rows together, so a crash can never leave a confirmed subscriber without proof, or a
signup without its email.

Concurrency: every use case about one person first *locks that person's contact row*, with an
UPDATE that changes nothing. That is a row lock on PostgreSQL and the database write lock on
SQLite. Two requests about the same person (a double click, a confirm racing an unsubscribe, a
purge racing a confirm) therefore run one after the other, and each one reads what the other
committed (catalogue F1, F2, F7).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from .. import addresses, suppression
from ..extensions import db
from ..models import (
    ConsentAction,
    ConsentEvent,
    ConsentText,
    Contact,
    ContactSource,
    OutboxMessage,
    OutboxStatus,
    RequestStatus,
    SignupRequest,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
    Topic,
    UTCDateTime,
    utcnow,
)

# The confirmation and leaving have modules of their own; the names re-exported below ("x as
# x") stay reachable from here, where the other steps of the double opt-in live.
from . import outbox_rows, topics
from .confirmation import ConfirmResult as ConfirmResult
from .confirmation import RequestExpired as RequestExpired
from .confirmation import RequestNotFound as RequestNotFound
from .confirmation import confirm as confirm
from .confirmation import describe as describe
from .confirmation import find_request
from .confirmation import subscribed_topics as subscribed_topics
from .leaving import unsubscribe_all as unsubscribe_all
from .topics import TopicLabel


@dataclass(frozen=True, slots=True)
class Client:
    """Who did it: the address from the trusted proxy hop, and the browser's User-Agent."""

    ip: str | None
    user_agent: str | None

    def ua(self) -> str | None:
        return self.user_agent[:512] if self.user_agent else None


class UnknownTopic(ValueError):
    """A topic that does not exist or is not public was asked for (catalogue C7)."""


class Outcome(enum.Enum):
    """What a signup did. The visitor sees the same page whatever it is (C3, C4)."""

    EMAILED = "emailed"
    ALREADY_SUBSCRIBED = "already-subscribed"
    THROTTLED = "throttled"
    BLOCKED = "blocked"


# --- helpers --------------------------------------------------------------------------------


_CONTACT = Contact.__table__

#: An UPDATE that changes nothing but takes the lock; on the table, not through the ORM,
#: which has nothing in its session to keep in step with it.
_LOCK = (
    update(_CONTACT)
    .where(_CONTACT.c.id == bindparam("contact"))
    .values(hard_bounces=_CONTACT.c.hard_bounces)
)


def lock_contact(contact_id: int) -> None:
    """Serialise every use case about this contact (see the module docstring)."""
    db.session.execute(_LOCK, {"contact": contact_id})


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


def record_event(
    action: ConsentAction,
    contact: Contact,
    topic: Topic | None,
    *,
    channel: str,
    client: Client,
    language: str,
    text: ConsentText | None = None,
    message_id: str | None = None,
    request: SignupRequest | None = None,
) -> None:
    db.session.add(
        ConsentEvent(
            contact_id=contact.id,
            topic_id=topic.id if topic else None,
            action=action,
            channel=channel,
            ip=client.ip,
            user_agent=client.ua(),
            language=language,
            consent_text_id=text.id if text else None,
            consent_text_sha256=text.sha256 if text else None,
            message_id=message_id,
            request_id=request.id if request else None,
            import_batch_id=request.import_batch_id if request else None,
        )
    )


def _request_lifetime() -> timedelta:
    """How long a request can wait: the link's age plus the time its email may spend in retries."""
    config = current_app.config
    return timedelta(
        seconds=int(config["CONFIRM_TOKEN_MAX_AGE"]) + int(config["OUTBOX_RETRY_PERIOD"])
    )


def _queue_confirmation(
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


def _blocked(address: addresses.Address) -> bool:
    return suppression.reason(address.canonical) is SuppressionReason.NOT_ME


def address_of(contact: Contact) -> addresses.Address:
    return addresses.parse(contact.email)


# --- use cases ------------------------------------------------------------------------------


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

    if _blocked(address):
        # The owner of the address said "not me": store nothing, send nothing.
        db.session.commit()  # reason() may have re-keyed the entry
        return Outcome.BLOCKED

    contact_id = _insert_or_lock_contact(address, language, ContactSource.FORM)
    now = utcnow()
    if _blocked(address):  # a "not me" that committed while we waited for the lock
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
            "expires_at": now + _request_lifetime(),
        },
    ).one()
    message_id = _queue_confirmation(request.public_id, language, first_name, contact_id, address)
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


def not_me(public_id: str) -> None:
    """ "This was not me": forget the pending request and don't send a signup email for a while."""
    request = find_request(public_id)
    lock_contact(request.contact_id)
    request = db.session.get(SignupRequest, request.id, populate_existing=True)
    if request is None or request.status is not RequestStatus.PENDING:
        db.session.commit()
        return
    contact = db.session.get(Contact, request.contact_id, populate_existing=True)
    days = int(current_app.config["NOT_ME_BLOCK_DAYS"])
    suppression.add(contact.email, SuppressionReason.NOT_ME, until=utcnow() + timedelta(days=days))
    _forget_request(request, contact)
    db.session.commit()


def _forget_request(request: SignupRequest, contact: Contact) -> None:
    """Delete a pending request and, if it was all we had, the contact (in the caller's tx)."""
    scrub_request_events([request.id])
    db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.contact_id == contact.id, OutboxMessage.status == OutboxStatus.PENDING)
        .values(status=OutboxStatus.CANCELLED, last_error="request withdrawn")
        .execution_options(synchronize_session=False)
    )
    db.session.delete(request)
    db.session.flush()
    if _is_empty(contact.id):
        scrub_ledger(contact.id)
        db.session.delete(contact)


def _is_empty(contact_id: int) -> bool:
    """True when a contact has no subscription and no request left."""
    has_subscription = db.session.scalar(
        select(Subscription.id).where(Subscription.contact_id == contact_id).limit(1)
    )
    has_request = db.session.scalar(
        select(SignupRequest.id).where(SignupRequest.contact_id == contact_id).limit(1)
    )
    return has_subscription is None and has_request is None


def scrub_request_events(request_ids: list[int]) -> None:
    """Unlink and anonymise the "requested" entries of requests that were never confirmed."""
    db.session.execute(
        update(ConsentEvent)
        .where(
            ConsentEvent.request_id.in_(request_ids),
            ConsentEvent.action == ConsentAction.REQUESTED,
        )
        .values(contact_id=None, ip=None, user_agent=None)
        .execution_options(synchronize_session=False)
    )


def scrub_ledger(contact_id: int) -> None:
    """Unlink and anonymise every ledger entry of a contact that is being deleted."""
    db.session.execute(
        update(ConsentEvent)
        .where(ConsentEvent.contact_id == contact_id)
        .values(contact_id=None, ip=None, user_agent=None)
        .execution_options(synchronize_session=False)
    )


def resend_confirmation(public_id: str) -> bool:
    """Send a fresh link for an expired, still pending request; False if nothing was sent."""
    request = find_request(public_id)
    lock_contact(request.contact_id)
    request = db.session.get(SignupRequest, request.id, populate_existing=True)
    if request is None or request.status is not RequestStatus.PENDING:
        db.session.commit()
        return False
    contact = db.session.get(Contact, request.contact_id, populate_existing=True)
    now = utcnow()
    window = timedelta(seconds=int(current_app.config["CONFIRM_EMAIL_INTERVAL"]))
    recently = request.emailed_at is not None and request.emailed_at > now - window
    if _blocked(address_of(contact)) or recently:
        db.session.commit()
        return False
    request.expires_at = now + _request_lifetime()
    _queue_confirmation(
        request.public_id, request.language, request.first_name, contact.id, address_of(contact)
    )
    db.session.commit()
    return True

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

from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import bindparam, select, update

from .. import addresses, suppression
from ..extensions import db
from ..models import (
    ConsentAction,
    ConsentEvent,
    ConsentText,
    Contact,
    OutboxMessage,
    OutboxStatus,
    RequestStatus,
    SignupRequest,
    Subscription,
    SuppressionReason,
    Topic,
    utcnow,
)

# Signing up, the confirmation and leaving have modules of their own; the names re-exported
# below ("x as x") stay reachable from here, where the other steps of the double opt-in live.
from .confirmation import ConfirmResult as ConfirmResult
from .confirmation import RequestExpired as RequestExpired
from .confirmation import RequestNotFound as RequestNotFound
from .confirmation import confirm as confirm
from .confirmation import describe as describe
from .confirmation import find_request
from .confirmation import subscribed_topics as subscribed_topics
from .leaving import LOCK_CONTACT
from .leaving import unsubscribe_all as unsubscribe_all
from .signup import Outcome as Outcome
from .signup import UnknownTopic as UnknownTopic
from .signup import blocked, queue_confirmation, request_lifetime
from .signup import public_topics_by_slug as public_topics_by_slug
from .signup import request_subscription as request_subscription


@dataclass(frozen=True, slots=True)
class Client:
    """Who did it: the address from the trusted proxy hop, and the browser's User-Agent."""

    ip: str | None
    user_agent: str | None

    def ua(self) -> str | None:
        return self.user_agent[:512] if self.user_agent else None


# --- helpers --------------------------------------------------------------------------------


_CONTACT = Contact.__table__

#: The lock (``leaving.LOCK_CONTACT``), on the table, not through the ORM, which has nothing
#: in its session to keep in step with it.
_LOCK = LOCK_CONTACT.where(_CONTACT.c.id == bindparam("contact"))


def lock_contact(contact_id: int) -> None:
    """Serialise every use case about this contact (see the module docstring)."""
    db.session.execute(_LOCK, {"contact": contact_id})


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


def address_of(contact: Contact) -> addresses.Address:
    return addresses.parse(contact.email)


# --- use cases ------------------------------------------------------------------------------


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
    if blocked(address_of(contact)) or recently:
        db.session.commit()
        return False
    request.expires_at = now + request_lifetime()
    queue_confirmation(
        request.public_id, request.language, request.first_name, contact.id, address_of(contact)
    )
    db.session.commit()
    return True

"""Leaving: unsubscribing from every topic, or from one, on any channel.

One of the busiest writes (every mailbox provider's one-click POST lands here), so it is
written with Core statements on the tables, one per table; the rules are those of every use
case (see subscriptions.py): the contact is locked first, and the ledger and change-feed
entries are written in the same transaction as the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, bindparam, insert, update

from ..extensions import db
from ..models import (
    ChangeKind,
    ConsentAction,
    ConsentEvent,
    Contact,
    RequestStatus,
    SignupRequest,
    Subscription,
    SubscriptionStatus,
    UTCDateTime,
    utcnow,
)
from . import changes

if TYPE_CHECKING:  # annotations only: subscriptions.py imports this module
    from .subscriptions import Client

_CONTACT = Contact.__table__
_SUBSCRIPTION = Subscription.__table__
_REQUEST = SignupRequest.__table__

#: The contact lock every use case takes first (subscriptions.lock_contact): an UPDATE that
#: changes nothing. Defined here, the lowest of the modules that take it (subscriptions
#: imports this one), and given a WHERE and a RETURNING by each.
LOCK_CONTACT = update(_CONTACT).values(hard_bounces=_CONTACT.c.hard_bounces)
#: Returning what the ledger, the change feed and the page need to know about the person.
_LOCK_ANY = LOCK_CONTACT.returning(
    _CONTACT.c.id, _CONTACT.c.public_id, _CONTACT.c.language, _CONTACT.c.manage_version
)
_LOCK = _LOCK_ANY.where(_CONTACT.c.id == bindparam("contact"))
#: The same, for the contact a link names by its public id: finding and locking it are one.
_LOCK_BY_LINK = _LOCK_ANY.where(_CONTACT.c.public_id == bindparam("link"))


@dataclass(frozen=True, slots=True)
class Leaver:
    """Who left, for the page that says so (and links to their preferences)."""

    id: int
    public_id: str
    language: str
    manage_version: int
    topics_left: int


#: Leave the contact's topics that are not left yet, returning which; ``version`` goes up as
#: the ORM's optimistic lock would raise it (``updated_at`` is the column's ``onupdate``).
_LEAVE = (
    update(_SUBSCRIPTION)
    .where(
        _SUBSCRIPTION.c.contact_id == bindparam("contact"),
        _SUBSCRIPTION.c.status != SubscriptionStatus.UNSUBSCRIBED,
    )
    .values(
        status=SubscriptionStatus.UNSUBSCRIBED,
        unsubscribed_at=bindparam("now", type_=UTCDateTime()),
        version=_SUBSCRIPTION.c.version + 1,
    )
    .returning(_SUBSCRIPTION.c.topic_id)
)
LEAVE_TOPICS = _LEAVE.where(_SUBSCRIPTION.c.topic_id.in_(bindparam("topics", expanding=True)))

#: A "withdrawn" ledger entry per topic, as record_event writes it without a consent text.
_RECORD_WITHDRAWN = insert(ConsentEvent.__table__).values(action=ConsentAction.WITHDRAWN)

_CANCEL_PENDING = (
    update(_REQUEST)
    .where(
        _REQUEST.c.contact_id == bindparam("contact"),
        _REQUEST.c.status == RequestStatus.PENDING,
    )
    .values(status=RequestStatus.CANCELLED)
)

_PREFERENCES_CHANGED = (
    update(_CONTACT)
    .where(_CONTACT.c.id == bindparam("contact"))
    .values(prefs_version=_CONTACT.c.prefs_version + 1)
)

#: PostgreSQL: both of the above in one statement (a data-modifying CTE), for leaving
#: everything when something was left, the one-click path: one round trip fewer. SQLite has
#: no data-modifying CTEs and no round trips to save.
#: ``updated_at`` is given: the column's ``onupdate`` is not applied to a statement with a
#: CTE attached (it was sent as NULL).
_CANCEL_PENDING_AND_CHANGE = _PREFERENCES_CHANGED.values(
    updated_at=bindparam("now", type_=UTCDateTime())
).add_cte(_CANCEL_PENDING.cte("cancelled"))


def unsubscribe_all(
    contact_id: int, *, channel: str, client: Client, topic_ids: list[int] | None = None
) -> int:
    """Leave every topic (or only ``topic_ids``); returns how many topics were left.

    Leaving everything also cancels every pending request, so an old confirmation link can
    never undo an unsubscribe (A8, F2). Repeating it changes nothing (B2: idempotent).
    """
    contact = db.session.connection().execute(_LOCK, {"contact": contact_id}).one_or_none()
    if contact is None:
        db.session.rollback()
        return 0
    return _leave(contact, channel, client, topic_ids)


def unsubscribe_by_link(
    public_id: str, *, channel: str, client: Client, topic_ids: list[int] | None = None
) -> Leaver | None:
    """``unsubscribe_all`` for the contact whose public id a link carries; None if it is gone."""
    contact = db.session.connection().execute(_LOCK_BY_LINK, {"link": public_id}).one_or_none()
    if contact is None:
        db.session.rollback()
        return None
    left = _leave(contact, channel, client, topic_ids)
    return Leaver(contact.id, contact.public_id, contact.language, contact.manage_version, left)


def _leave(contact: Row[Any], channel: str, client: Client, topic_ids: list[int] | None) -> int:
    """The writes of leaving, under the lock just taken: one UPDATE leaves the topics and says
    which, and their ledger and change-feed entries are one ``executemany`` each."""
    # Core statements on the session's connection: the ORM's execute adds nothing here.
    connection = db.session.connection()
    params = {"contact": contact.id, "now": utcnow()}
    if topic_ids is None:
        left = connection.execute(_LEAVE, params).scalars().all()
    else:
        left = connection.execute(LEAVE_TOPICS, {**params, "topics": topic_ids}).scalars().all()
    if left:
        user_agent = client.ua()
        connection.execute(
            _RECORD_WITHDRAWN,
            [
                {
                    "contact_id": contact.id,
                    "topic_id": topic_id,
                    "channel": channel,
                    "ip": client.ip,
                    "user_agent": user_agent,
                    "language": contact.language,
                }
                for topic_id in left
            ],
        )
        changes.record_topics(ChangeKind.UNSUBSCRIBED, contact.public_id, left)
    if topic_ids is None and left and connection.dialect.name == "postgresql":
        connection.execute(_CANCEL_PENDING_AND_CHANGE, params)
    else:
        if topic_ids is None:
            connection.execute(_CANCEL_PENDING, {"contact": contact.id})
        if left:
            connection.execute(_PREFERENCES_CHANGED, {"contact": contact.id})
    db.session.commit()
    return len(left)

"""Leaving: unsubscribing from every topic, or from one, on any channel.

One of the busiest writes (every mailbox provider's one-click POST lands here), so it is
written with Core statements on the tables, one per table; the rules are those of every use
case (see subscriptions.py): the contact is locked first, and the ledger and change-feed
entries are written in the same transaction as the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Insert,
    bindparam,
    exists,
    insert,
    select,
    update,
)

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
from .prepared import Prepared

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


class _Locked(NamedTuple):
    """The contact as the lock returns it (_LOCK_ANY)."""

    id: int
    public_id: str
    language: str
    manage_version: int


#: On SQLite without SQLAlchemy's per-execution work (prepared.py): one-click is this busy.
_PREPARED_LOCK = Prepared(_LOCK)
_PREPARED_LOCK_BY_LINK = Prepared(_LOCK_BY_LINK)


def uses_ctes(connection: Connection) -> bool:
    """Whether the busiest writes go in data-modifying CTEs, one round trip for several
    statements: on PostgreSQL. SQLite has none (and no round trips to save). A test turns it
    off to hold both ways to the same rows (tests/test_postgresql_ctes.py)."""
    return connection.dialect.name == "postgresql"


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

_EVENT = ConsentEvent.__table__
#: A "withdrawn" ledger entry per topic, as record_event writes it without a consent text.
_RECORD_WITHDRAWN = insert(_EVENT).values(action=ConsentAction.WITHDRAWN)

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


_PREPARED_LEAVE = Prepared(_LEAVE)
_PREPARED_RECORD_WITHDRAWN = Prepared(_RECORD_WITHDRAWN)
_PREPARED_CANCEL_PENDING = Prepared(_CANCEL_PENDING)
_PREPARED_PREFERENCES_CHANGED = Prepared(_PREFERENCES_CHANGED)


def ledger_rows(
    topic_id: ColumnElement[Any],
    action: ConsentAction | ColumnElement[Any],
    now: BindParameter[Any],
    order_by: ColumnElement[Any] | None = None,
    **more: ColumnElement[Any],
) -> Insert:
    """PostgreSQL: ``INSERT INTO consent_event … SELECT`` one entry per ``topic_id`` of the
    FROM it is taken from (a CTE's RETURNING, an ``unnest``), for a CTE of a statement here,
    in ``confirmation`` or in ``choices``; the person and the client come from ``event_*``
    parameters, the action is one for all or a column, and ``more`` adds or replaces columns
    (the consent text, the request, the channel)."""
    if isinstance(action, ConsentAction):
        action = bindparam(f"{action.value}_action", action, _EVENT.c.action.type)
    columns: dict[str, ColumnElement[Any]] = {
        "contact_id": bindparam("contact", type_=_EVENT.c.contact_id.type),
        "topic_id": topic_id,
        "action": action,
        "occurred_at": now,
        "channel": bindparam("event_channel", type_=_EVENT.c.channel.type),
        "ip": bindparam("event_ip", type_=_EVENT.c.ip.type),
        "user_agent": bindparam("event_user_agent", type_=_EVENT.c.user_agent.type),
        "language": bindparam("event_language", type_=_EVENT.c.language.type),
        **more,
    }
    rows = select(*columns.values())
    if order_by is not None:  # ids in this order, as an executemany of the entries gives them
        rows = rows.order_by(order_by)
    return insert(_EVENT).from_select(list(columns), rows)


def _leave_postgresql(*, everything: bool) -> Any:
    """PostgreSQL: every write of leaving in one statement, under the lock already taken.

    ``WITH left_topics AS (UPDATE subscription … RETURNING topic_id), withdrawn AS (INSERT
    INTO consent_event … SELECT … FROM left_topics), [cancelled AS (UPDATE signup_request …),]
    changed AS (UPDATE contact … WHERE EXISTS (SELECT FROM left_topics)) SELECT topic_id FROM
    left_topics``: the rows the separate statements of ``_leave`` write, in one round trip
    and one statement for the server instead of three or four, on the busiest page of the
    service. PostgreSQL runs every data-modifying CTE once and to completion whether or not
    the query reads it, and the ledger and the version see exactly the topics that were left.
    The contact row is already locked by this transaction, so nothing here waits for a lock
    that another use case could hold while it waits for ours.

    No bind parameter is named after a column of a table that a CTE updates: SQLAlchemy
    turns such an execution parameter into one more ``SET`` of that UPDATE (``language`` would
    have set the contact's language). And it applies no Python ``default``/``onupdate`` inside
    a statement with CTEs, so every column is given. SQLite has no data-modifying CTEs (and no
    round trips to save): it runs the separate statements.
    """
    now = bindparam("now", type_=UTCDateTime())
    # The statements of _leave, with the ``updated_at`` their columns' onupdate would give.
    left = (_LEAVE if everything else LEAVE_TOPICS).values(updated_at=now).cte("left_topics")
    withdrawn = ledger_rows(left.c.topic_id, ConsentAction.WITHDRAWN, now)
    changed = _PREFERENCES_CHANGED.values(updated_at=now).where(exists(select(left.c.topic_id)))
    statement = select(left.c.topic_id).add_cte(left, withdrawn.cte("withdrawn"))
    if everything:
        statement = statement.add_cte(_CANCEL_PENDING.cte("cancelled"))
    return statement.add_cte(changed.cte("changed"))


_LEAVE_ALL_POSTGRESQL = _leave_postgresql(everything=True)
_LEAVE_TOPICS_POSTGRESQL = _leave_postgresql(everything=False)


def unsubscribe_all(
    contact_id: int, *, channel: str, client: Client, topic_ids: list[int] | None = None
) -> int:
    """Leave every topic (or only ``topic_ids``); returns how many topics were left.

    Leaving everything also cancels every pending request, so an old confirmation link can
    never undo an unsubscribe (A8, F2). Repeating it changes nothing (B2: idempotent).
    """
    locked = _PREPARED_LOCK.execute(db.session.connection(), {"contact": contact_id})
    if not locked:
        db.session.rollback()
        return 0
    return _leave(_Locked(*locked[0]), channel, client, topic_ids)


def unsubscribe_by_link(
    public_id: str, *, channel: str, client: Client, topic_ids: list[int] | None = None
) -> Leaver | None:
    """``unsubscribe_all`` for the contact whose public id a link carries; None if it is gone."""
    locked = _PREPARED_LOCK_BY_LINK.execute(db.session.connection(), {"link": public_id})
    if not locked:
        db.session.rollback()
        return None
    contact = _Locked(*locked[0])
    left = _leave(contact, channel, client, topic_ids)
    return Leaver(contact.id, contact.public_id, contact.language, contact.manage_version, left)


def _leave(contact: _Locked, channel: str, client: Client, topic_ids: list[int] | None) -> int:
    """The writes of leaving, under the lock just taken: one UPDATE leaves the topics and says
    which, and their ledger and change-feed entries are one ``executemany`` each."""
    # Core statements on the session's connection: the ORM's execute adds nothing here.
    connection = db.session.connection()
    params: dict[str, Any] = {"contact": contact.id, "now": utcnow()}
    if uses_ctes(connection):
        return _leave_in_one_statement(connection, contact, channel, client, topic_ids, params)
    if topic_ids is None:
        left = [topic_id for (topic_id,) in _PREPARED_LEAVE.execute(connection, params)]
    else:
        left = connection.execute(LEAVE_TOPICS, {**params, "topics": topic_ids}).scalars().all()
    if left:
        user_agent = client.ua()
        _PREPARED_RECORD_WITHDRAWN.execute(
            connection,
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
    if topic_ids is None:
        _PREPARED_CANCEL_PENDING.execute(connection, {"contact": contact.id})
    if left:
        _PREPARED_PREFERENCES_CHANGED.execute(connection, {"contact": contact.id})
    db.session.commit()
    return len(left)


def _leave_in_one_statement(
    connection: Connection,
    contact: _Locked,
    channel: str,
    client: Client,
    topic_ids: list[int] | None,
    params: dict[str, Any],
) -> int:
    """``_leave`` on PostgreSQL: the same writes as one statement (``_leave_postgresql``)."""
    params.update(
        event_channel=channel,
        event_ip=client.ip,
        event_user_agent=client.ua(),
        event_language=contact.language,
    )
    if topic_ids is None:
        left = connection.execute(_LEAVE_ALL_POSTGRESQL, params).scalars().all()
    else:
        params["topics"] = topic_ids
        left = connection.execute(_LEAVE_TOPICS_POSTGRESQL, params).scalars().all()
    if left:
        changes.record_topics(ChangeKind.UNSUBSCRIBED, contact.public_id, left)
    db.session.commit()
    return len(left)

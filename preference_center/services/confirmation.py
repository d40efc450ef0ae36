"""Confirming a signup: the click that turns a pending request into subscriptions.

This is the busiest write of the service (every subscriber passes here once), so it is written
with Core statements on the tables rather than through the ORM's unit of work: each write is
one statement, several rows are one ``executemany``, and nothing is loaded only to be flushed
back. The rules are those of every use case (see subscriptions.py): the person's contact row
is locked first, everything is one transaction, and the consent ledger, the change feed and
the welcome email are written with the state change they belong to, so a crash can never leave
a confirmed subscriber without proof (K6) or the mailing list without the news.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Connection, Integer, Row, bindparam, cast, func, insert, null, select, update
from sqlalchemy.dialects import postgresql, sqlite

from .. import suppression
from ..extensions import db
from ..models import (
    ChangeKind,
    ConsentAction,
    ConsentEvent,
    ConsentText,
    Contact,
    OutboxMessage,
    RequestStatus,
    SignupRequest,
    Subscription,
    SubscriptionStatus,
    Topic,
    UTCDateTime,
    utcnow,
)
from . import changes, leaving, outbox_rows
from .prepared import Prepared
from .topics import TopicLabel, select_labels

if TYPE_CHECKING:  # annotations only: subscriptions.py imports this module
    from .subscriptions import Client

_CONTACT = Contact.__table__
_REQUEST = SignupRequest.__table__
_SUBSCRIPTION = Subscription.__table__
_EVENT = ConsentEvent.__table__
_TEXT = ConsentText.__table__


class RequestNotFound(LookupError):
    """The link's request no longer exists (purged, or never did)."""


class RequestExpired(Exception):
    """The request's deadline passed; a fresh link can be sent (A2, A9)."""

    def __init__(self, public_id: str) -> None:
        super().__init__("request expired")
        self.public_id = public_id


@dataclass(frozen=True, slots=True)
class RequestContact:
    """The person a confirmation link is about, as the confirmation pages show them."""

    id: int
    public_id: str
    email: str
    email_display: str
    language: str
    first_name: str | None
    manage_version: int  # for the link to their preference page


@dataclass(frozen=True)
class ConfirmResult:
    """The state after a confirmation attempt, for the page that shows it."""

    state: RequestStatus  # CONFIRMED now or before, or CANCELLED (an unsubscribe came first)
    newly_confirmed: bool
    contact: RequestContact
    topics: list[TopicLabel]


# --- reading --------------------------------------------------------------------------------


def find_request(public_id: str) -> SignupRequest:
    """The request as an ORM object, for the pages that need more than the confirmation."""
    request = db.session.scalar(select(SignupRequest).where(SignupRequest.public_id == public_id))
    if request is None:
        raise RequestNotFound(public_id)
    return request


#: Built once: composing a statement costs more than running it on a page this busy. The
#: range of ids rather than ``IN (…)``: an expanding IN is rendered anew for every execution,
#: which cost as much as running the statement; the primary key's range holds the request's
#: topics (usually one, or a few neighbours) and the others are left out below.
_TOPICS = select_labels().where(
    Topic.__table__.c.id.between(bindparam("first_id"), bindparam("last_id"))
)


def topics_of(
    topic_ids: Sequence[int] | None, connection: Connection | None = None
) -> list[TopicLabel]:
    """The topics of a request, in their display order."""
    if not topic_ids:
        return []
    wanted = set(topic_ids)
    connection = connection or db.session.connection()
    rows = _PREPARED_TOPICS.execute(connection, {"first_id": min(wanted), "last_id": max(wanted)})
    found = (TopicLabel(*row) for row in rows)
    return sorted((t for t in found if t.id in wanted), key=lambda t: (t.position, t.id))


def subscribed_topics(contact_id: int, among: list[TopicLabel]) -> list[TopicLabel]:
    """Which of ``among`` the contact is subscribed to right now."""
    ids = set(
        db.session.scalars(
            select(Subscription.topic_id).where(
                Subscription.contact_id == contact_id,
                Subscription.status == SubscriptionStatus.SUBSCRIBED,
            )
        )
    )
    return [t for t in among if t.id in ids]


_CONTACT_COLUMNS = (
    _CONTACT.c.id,
    _CONTACT.c.public_id,
    _CONTACT.c.email,
    _CONTACT.c.email_display,
    _CONTACT.c.language,
    _CONTACT.c.first_name,
    _CONTACT.c.manage_version,
)

#: The request and its person in one statement (the confirmation page, and a repeated click).
_READ = (
    select(_REQUEST.c.status, _REQUEST.c.expires_at, _REQUEST.c.topic_ids, *_CONTACT_COLUMNS)
    .join_from(_REQUEST, _CONTACT, _REQUEST.c.contact_id == _CONTACT.c.id)
    .where(_REQUEST.c.public_id == bindparam("link_id"))
)


def _contact(row: Row[Any]) -> RequestContact:
    return RequestContact(
        row.id,
        row.public_id,
        row.email,
        row.email_display,
        row.language,
        row.first_name,
        row.manage_version,
    )


def describe(public_id: str) -> ConfirmResult:
    """What a confirmation link would confirm, without changing anything (the GET, B1)."""
    row = db.session.connection().execute(_READ, {"link_id": public_id}).one_or_none()
    if row is None:
        raise RequestNotFound(public_id)
    if row.status is RequestStatus.PENDING and row.expires_at <= utcnow():
        raise RequestExpired(public_id)
    return ConfirmResult(row.status, False, _contact(row), topics_of(row.topic_ids))


# --- confirming -----------------------------------------------------------------------------

#: The lock of subscriptions.lock_contact, reaching the contact through its request's public
#: id, and at once the changes a confirmation makes to the person: the request's first name
#: (if it has one) and language become theirs, and prefs_version goes up, so a preference page
#: opened before is stale (F3). It returns the contact as changed. When the request turns out
#: not to be confirmable, the transaction is rolled back and the person is as they were.
#: (The request's first name and language never change, so reading them before the lock
#: was granted, as PostgreSQL may, reads the same values.)
_LOCK_AND_UPDATE = (
    update(_CONTACT)
    .where(_CONTACT.c.id == _REQUEST.c.contact_id, _REQUEST.c.public_id == bindparam("link_id"))
    .values(
        first_name=func.coalesce(_REQUEST.c.first_name, _CONTACT.c.first_name),
        language=_REQUEST.c.language,
        prefs_version=_CONTACT.c.prefs_version + 1,
    )
    .returning(*_CONTACT_COLUMNS)
)

#: The moment of the confirmation, compared with the deadline and stored (UTC, see UTCDateTime).
_NOW = bindparam("now", type_=UTCDateTime())

#: Only a pending request that has not expired is confirmed; the conditions are checked by the
#: UPDATE itself, under the contact's lock, so a second click finds nothing to change (A7).
_MARK_CONFIRMED = (
    update(_REQUEST)
    .where(
        _REQUEST.c.public_id == bindparam("link_id"),
        _REQUEST.c.status == RequestStatus.PENDING,
        _REQUEST.c.expires_at > _NOW,
    )
    .values(status=RequestStatus.CONFIRMED, confirmed_at=_NOW)
    .returning(
        _REQUEST.c.id,
        _REQUEST.c.topic_ids,
        _REQUEST.c.language,
        _REQUEST.c.first_name,
        _REQUEST.c.channel,
        _REQUEST.c.import_batch_id,
        _REQUEST.c.consent_text_id,
    )
)

#: One ledger entry per topic, with the hash of the exact text the person agreed to (K6).
_RECORD_CONFIRMED = insert(_EVENT).values(
    action=ConsentAction.CONFIRMED,
    consent_text_sha256=select(_TEXT.c.sha256)
    .where(_TEXT.c.id == bindparam("text_id"))
    .scalar_subquery(),
)


class _Confirmed(NamedTuple):
    """The request as _MARK_CONFIRMED returns it."""

    id: int
    topic_ids: list[int]
    language: str
    first_name: str | None
    channel: str
    import_batch_id: int | None
    consent_text_id: int | None


#: On SQLite, without SQLAlchemy's per-execution work (prepared.py): this is its busiest write.
_PREPARED_LOCK = Prepared(_LOCK_AND_UPDATE)
_PREPARED_MARK = Prepared(_MARK_CONFIRMED)
_PREPARED_TOPICS = Prepared(_TOPICS)
_PREPARED_RECORD = Prepared(_RECORD_CONFIRMED)


def _subscribe_statement(dialect: str, *, frequency: bool) -> Any:
    """Subscribe to a topic, or subscribe again: a row that exists is updated in place.

    ``version`` goes up as the ORM's optimistic lock would raise it, and ``updated_at`` is set
    here because an ON CONFLICT update does not apply the column's ``onupdate``. The frequency
    is kept unless the caller chooses one (the preference page does, a confirmation does not).
    """
    statement = (postgresql if dialect == "postgresql" else sqlite).insert(_SUBSCRIPTION)
    updates = {
        "status": statement.excluded.status,
        "confirmed_at": statement.excluded.confirmed_at,
        "unsubscribed_at": None,
        "updated_at": statement.excluded.updated_at,
        "version": _SUBSCRIPTION.c.version + 1,
    }
    if frequency:
        updates["frequency"] = statement.excluded.frequency
    return statement.on_conflict_do_update(
        index_elements=[_SUBSCRIPTION.c.contact_id, _SUBSCRIPTION.c.topic_id], set_=updates
    )


_SUBSCRIBE = {
    (dialect, frequency): Prepared(_subscribe_statement(dialect, frequency=frequency))
    for dialect in ("postgresql", "sqlite")
    for frequency in (False, True)
}


def subscribe(
    connection: Connection,
    contact_id: int,
    topic_ids: Sequence[int],
    now: datetime,
    frequencies: dict[int, str | None] | None = None,
) -> None:
    """Subscribe the contact to ``topic_ids`` in one statement, inserting or updating each
    subscription; with ``frequencies`` (topic id to frequency) those are chosen too."""
    dialect = "postgresql" if connection.dialect.name == "postgresql" else "sqlite"
    rows: list[dict[str, Any]] = [
        {
            "contact_id": contact_id,
            "topic_id": topic_id,
            "status": SubscriptionStatus.SUBSCRIBED,
            "confirmed_at": now,
            "unsubscribed_at": None,
        }
        for topic_id in topic_ids
    ]
    if frequencies is not None:
        for row in rows:
            row["frequency"] = frequencies.get(row["topic_id"])
    _SUBSCRIBE[dialect, frequencies is not None].execute(connection, rows)


def confirm(public_id: str, client: Client) -> ConfirmResult:
    """Turn a pending request into subscriptions, once; a repeat shows the state (A7, A8)."""
    # Core statements on the session's connection: the ORM's execute adds nothing here.
    connection = db.session.connection()
    locked = _PREPARED_LOCK.execute(connection, {"link_id": public_id})
    if not locked:
        db.session.rollback()
        raise RequestNotFound(public_id)
    contact = RequestContact(*locked[0])
    now = utcnow()
    if leaving.uses_ctes(connection):
        return _confirm_postgresql(connection, public_id, contact, client, now)
    confirmed = _PREPARED_MARK.execute(connection, {"link_id": public_id, "now": now})
    if not confirmed:
        db.session.rollback()  # undo the changes to the person: there is nothing to confirm
        return _not_confirmed(public_id)
    request = _Confirmed(*confirmed[0])

    chosen = topics_of(request.topic_ids, connection)
    if request.import_batch_id is not None:
        from .repermission import record_confirmation  # imports are a later layer

        record_confirmation(db.session.get(SignupRequest, request.id))
    if chosen:
        _subscribe(connection, contact, chosen, request, client, now)
    # A fresh, explicit confirmation is the only thing that lifts a suppression (C11, K4).
    suppression.lift(contact.email)
    _queue_welcome(connection, contact, chosen)
    db.session.commit()
    return ConfirmResult(RequestStatus.CONFIRMED, True, contact, chosen)


def _not_confirmed(public_id: str) -> ConfirmResult:
    """A request that was confirmed or cancelled before, purged, or expired: say which.

    Read after the rollback, without the lock: a confirmed or cancelled request stays so, and
    one still pending was past its deadline when the lock was held.
    """
    row = db.session.connection().execute(_READ, {"link_id": public_id}).one_or_none()
    if row is None:  # purged while we waited for the lock
        raise RequestNotFound(public_id)
    if row.status is RequestStatus.PENDING:
        raise RequestExpired(public_id)
    return ConfirmResult(row.status, False, _contact(row), topics_of(row.topic_ids))


def _subscribe(
    connection: Connection,
    contact: RequestContact,
    topics: list[TopicLabel],
    request: _Confirmed,
    client: Client,
    now: datetime,
) -> None:
    """The subscriptions, their ledger entries and their change-feed entries, one per topic."""
    subscribe(connection, contact.id, [topic.id for topic in topics], now)
    user_agent = client.ua()
    _PREPARED_RECORD.execute(
        connection,
        [
            {
                "contact_id": contact.id,
                "topic_id": topic.id,
                "channel": request.channel,
                "ip": client.ip,
                "user_agent": user_agent,
                "language": request.language,
                "consent_text_id": request.consent_text_id,
                "text_id": request.consent_text_id,
                "message_id": None,
                "request_id": request.id,
                "import_batch_id": request.import_batch_id,
            }
            for topic in topics
        ],
    )
    changes.record_topics(ChangeKind.SUBSCRIBED, contact.public_id, [t.id for t in topics])


def _queue_welcome(
    connection: Connection, contact: RequestContact, topics: list[TopicLabel]
) -> None:
    """One welcome email, with the person's own preference link and one-click unsubscribe."""
    outbox_rows.queue(connection, **_welcome(contact, [t.id for t in topics]))


def _welcome(contact: RequestContact, topic_ids: list[int]) -> dict[str, Any]:
    """What the welcome email's outbox row is made of (``outbox_rows.queue``'s arguments)."""
    return {
        "template": "welcome",
        "to_address": outbox_rows.ascii_address(contact.email),
        "language": contact.language,
        "to_name": contact.first_name,
        "context": {"contact": contact.public_id, "topics": topic_ids},
        "contact_id": contact.id,
        "category": "marketing",
    }


# --- PostgreSQL: the same confirmation in fewer statements ----------------------------------
#
# After the contact's lock, the SQLite path above runs six statements; on PostgreSQL each is a
# round trip and a statement for the server to run, on the busiest write of the service.
# Data-modifying CTEs make them two: one confirms the request and returns it with its topics,
# one writes the subscriptions, their ledger entries, the lifted suppression and the welcome
# email. The rows are those the SQLite path writes (tests compare both). The change feed's
# entries are still the transaction's last statement (changes.py, F5), and the contact's
# lock is still the first: everything else is written under it.
#
# No bind parameter is named after a column of a table these statements write: SQLAlchemy
# turns such an execution parameter into one more SET or VALUES entry of that table. And it
# applies no Python ``default`` inside a statement with CTEs, so every column is given.


#: The request confirmed (if it is pending and in time) and returned with every topic it
#: names that exists: one row per topic, or one row with NULL topic columns when none does.
_PG_CONFIRMED = _MARK_CONFIRMED.cte("confirmed")
_TOPIC_TABLE = Topic.__table__
_LABEL_COLUMNS = [_TOPIC_TABLE.c[name] for name in TopicLabel.__slots__]
_PG_CONFIRM_AND_TOPICS = (
    select(_PG_CONFIRMED, *_LABEL_COLUMNS)
    .select_from(_PG_CONFIRMED)
    .outerjoin(
        _TOPIC_TABLE,
        _TOPIC_TABLE.c.id.in_(
            select(cast(func.json_array_elements_text(_PG_CONFIRMED.c.topic_ids), Integer))
        ),
    )
    .add_cte(_PG_CONFIRMED)
)

#: The topics to subscribe to, as rows: ``unnest(:topic_list) AS chosen(topic_id)``.
_PG_CHOSEN = (
    func.unnest(bindparam("topic_list", type_=postgresql.ARRAY(Integer)))
    .table_valued("topic_id")
    .render_derived(name="chosen")
)
_OUTBOX = OutboxMessage.__table__
#: Every column of an outbox row that the ORM's enqueue fills (the others start NULL).
_MAIL_COLUMNS = (
    "message_id", "template", "category", "to_address", "to_name", "language", "context",
    "contact_id", "status", "attempts", "next_attempt_at", "created_at",
)  # fmt: skip


def _pg_confirm_writes() -> Any:
    """Subscriptions, ledger entries, the lifted suppression and the welcome email: one
    statement, ``WITH subscribed AS (INSERT … ON CONFLICT …), recorded AS (INSERT …), lifted
    AS (DELETE …) INSERT INTO outbox_message …``."""
    one = bindparam("first_version", 1, Integer)
    subscribe_rows = postgresql.insert(_SUBSCRIPTION).from_select(
        [
            "contact_id",
            "topic_id",
            "status",
            "created_at",
            "updated_at",
            "confirmed_at",
            "unsubscribed_at",
            "version",
        ],
        select(
            bindparam("contact", type_=Integer),
            _PG_CHOSEN.c.topic_id,
            bindparam(
                "subscribed_status", SubscriptionStatus.SUBSCRIBED, _SUBSCRIPTION.c.status.type
            ),
            _NOW,
            _NOW,
            _NOW,
            null(),
            one,
        ),
    )
    # As _subscribe_statement: subscribing again updates the row in place.
    subscribed = subscribe_rows.on_conflict_do_update(
        index_elements=[_SUBSCRIPTION.c.contact_id, _SUBSCRIPTION.c.topic_id],
        set_={
            "status": subscribe_rows.excluded.status,
            "confirmed_at": subscribe_rows.excluded.confirmed_at,
            "unsubscribed_at": null(),
            "updated_at": subscribe_rows.excluded.updated_at,
            "version": _SUBSCRIPTION.c.version + one,
        },
    )
    text_id = bindparam("text", type_=Integer)
    recorded = leaving.ledger_rows(
        _PG_CHOSEN.c.topic_id,
        ConsentAction.CONFIRMED,
        _NOW,
        consent_text_id=text_id,
        consent_text_sha256=select(_TEXT.c.sha256).where(_TEXT.c.id == text_id).scalar_subquery(),
        import_batch_id=bindparam("batch", type_=Integer),
        request_id=bindparam("request", type_=Integer),
        message_id=null(),
    )
    mail = insert(_OUTBOX).values(
        {name: bindparam(f"mail_{name}", type_=_OUTBOX.c[name].type) for name in _MAIL_COLUMNS}
    )
    return mail.add_cte(
        subscribed.cte("subscribed"),
        recorded.cte("recorded"),
        suppression.LIFT_ANY.cte("lifted"),
    )


_PG_CONFIRM_WRITES = _pg_confirm_writes()


def _confirm_postgresql(
    connection: Connection, public_id: str, contact: RequestContact, client: Client, now: datetime
) -> ConfirmResult:
    """``confirm`` after the lock, on PostgreSQL: the same writes in two statements."""
    rows = connection.execute(_PG_CONFIRM_AND_TOPICS, {"link_id": public_id, "now": now}).all()
    if not rows:
        db.session.rollback()  # undo the changes to the person: there is nothing to confirm
        return _not_confirmed(public_id)
    request = rows[0]
    labels = len(_LABEL_COLUMNS)
    found = (TopicLabel(*row[-labels:]) for row in rows if row[-labels] is not None)
    chosen = sorted(found, key=lambda t: (t.position, t.id))
    topic_ids = [t.id for t in chosen]
    if request.import_batch_id is not None:
        from .repermission import record_confirmation  # imports are a later layer

        record_confirmation(db.session.get(SignupRequest, request.id))
        db.session.flush()
    mail = outbox_rows.complete_row(now=now, **_welcome(contact, topic_ids))
    connection.execute(
        _PG_CONFIRM_WRITES,
        {
            "contact": contact.id,
            "now": now,
            "topic_list": topic_ids,
            "event_channel": request.channel,
            "event_ip": client.ip,
            "event_user_agent": client.ua(),
            "event_language": request.language,
            "text": request.consent_text_id,
            "batch": request.import_batch_id,
            "request": request.id,
            # A fresh, explicit confirmation is the only thing that lifts a suppression (C11).
            "digests": suppression.digests_of(contact.email),
            **{f"mail_{name}": value for name, value in mail.items()},
        },
    )
    if topic_ids:
        changes.record_topics(ChangeKind.SUBSCRIBED, contact.public_id, topic_ids)
    db.session.commit()
    return ConfirmResult(RequestStatus.CONFIRMED, True, contact, chosen)

"""Entries of the change feed that the mailing list follows (issue: export and sync).

Written by the use cases, in their own transaction, whenever what the list must know changes.

The id of an entry is the feed's cursor, so ids must become visible in the order they were
allocated: a consumer that has read id 11 must never later see id 10 appear (F5). With
several writers on PostgreSQL, a sequence alone does not give that (transaction A takes 10,
B takes 11 and commits first). So the entries of a transaction are not inserted when
``record`` is called but in a ``before_commit`` hook, as the transaction's very last
statement, under a transaction-level advisory lock that the commit releases: allocation and
commit then happen in one order. The lock is held only for that insert and the commit, and
never while waiting for a row lock, so it cannot take part in a deadlock. SQLite has a
single writer and needs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Insert, bindparam, event, func, insert, select
from sqlalchemy.orm import Session

from ..extensions import db
from ..models import (
    ChangeKind,
    Contact,
    SubscriberChange,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from .prepared import Prepared

#: Key of the PostgreSQL advisory lock that serialises the feed's writers (any constant).
FEED_LOCK_KEY = 0x5059_4E43  # "SYNC"
_PENDING = "pending_feed_entries"


def record(kind: ChangeKind, contact: Contact) -> None:
    """Add a feed entry about ``contact`` (not one topic) to the caller's transaction."""
    record_entries(contact.public_id, [(kind, None)])


def record_topics(kind: ChangeKind, subscriber_id: str, topic_ids: Iterable[int | None]) -> None:
    """The entries ``record`` would add for these topics (None: the person, not a topic).

    For the pages that work with plain ids rather than ORM objects; ``subscriber_id`` is the
    contact's ``public_id``.
    """
    record_entries(subscriber_id, [(kind, topic_id) for topic_id in topic_ids])


def record_entries(subscriber_id: str, entries: Iterable[tuple[ChangeKind, int | None]]) -> None:
    """Like ``record_topics``, with a kind per entry; written in the order given.

    Never for an erasure: its tombstones carry the address, which only ``record_erasure``
    writes.
    """
    for kind, topic_id in entries:
        if kind is ChangeKind.ERASED:
            raise ValueError("erasure tombstones are written by record_erasure()")
        _queue(kind, subscriber_id, topic_id)


def record_erasure(contact: Contact) -> None:
    """Tombstones for an erased person: one per topic the list ever had them in.

    Only topics with a confirmed subscription at some point: an address that was never
    confirmed never left the service, so no consumer may learn it even as a tombstone (L2);
    and a consumer scoped to other topics never learns of it either.
    """
    topic_ids = db.session.scalars(
        select(Subscription.topic_id).where(
            Subscription.contact_id == contact.id, Subscription.confirmed_at.is_not(None)
        )
    ).all()
    for topic_id in sorted(topic_ids):
        # Only a tombstone carries the address: the list needs it to find the member.
        _queue(ChangeKind.ERASED, contact.public_id, topic_id, email=contact.email)


def record_bounce(contact_id: int) -> None:
    """The address bounces for good: every list that has the person must drop them (L2).

    One entry per topic the person is subscribed to, in the caller's transaction; nothing for
    someone never confirmed, who was never exported.
    """
    rows = db.session.execute(
        select(Contact.public_id, Subscription.topic_id)
        .join(Subscription, Subscription.contact_id == Contact.id)
        .where(
            Contact.id == contact_id,
            Subscription.status == SubscriptionStatus.SUBSCRIBED,
            Subscription.confirmed_at.is_not(None),
        )
        .order_by(Subscription.topic_id)
    ).all()
    for public_id, topic_id in rows:
        _queue(ChangeKind.BOUNCED, public_id, topic_id)


def _queue(
    kind: ChangeKind, subscriber_id: str, topic_id: int | None, email: str | None = None
) -> None:
    """Hold an entry until the transaction commits (``_write_pending``)."""
    db.session.info.setdefault(_PENDING, []).append(
        {"kind": kind, "subscriber_id": subscriber_id, "topic_id": topic_id, "email": email}
    )


#: Built once, and run as Core statements on the session's connection: every confirmation,
#: unsubscribe and saved preference page commits through here, and the ORM's bulk-insert path
#: (which ``session.execute(insert(SubscriberChange), entries)`` takes) only adds work to the
#: same INSERT … executemany.
_INSERT_ENTRIES = Prepared(insert(SubscriberChange.__table__))
_ENTRY_COLUMNS = ("kind", "subscriber_id", "topic_id", "occurred_at", "email")


def _locked_insert() -> Insert:
    """PostgreSQL: the entries' INSERT, taking the feed's advisory lock in the same statement.

    ``WITH feed_lock AS MATERIALIZED (SELECT pg_advisory_xact_lock(:key)) INSERT … SELECT …
    FROM feed_lock``: the CTE is its own plan node, so the lock is held before the INSERT
    takes an id from the sequence, exactly as when the lock was a statement of its own (F5),
    for one round trip fewer on every write that reaches the feed. Taken again by each row
    of an executemany, which PostgreSQL allows within a transaction.
    """
    table = SubscriberChange.__table__
    lock = select(func.pg_advisory_xact_lock(bindparam("key"))).cte("feed_lock")
    lock = lock.prefix_with("MATERIALIZED")
    values = select(
        *(bindparam(name, type_=table.c[name].type) for name in _ENTRY_COLUMNS)
    ).select_from(lock)
    return insert(table).from_select(list(_ENTRY_COLUMNS), values)


_LOCKED_INSERT_ENTRIES = _locked_insert()


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    entries = session.info.pop(_PENDING, None)
    if not entries:
        return
    # One timestamp for the transaction: its entries happened together.
    now = utcnow()
    for entry in entries:
        entry["occurred_at"] = now
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        for entry in entries:
            entry["key"] = FEED_LOCK_KEY
        connection.execute(_LOCKED_INSERT_ENTRIES, entries)
    else:
        _INSERT_ENTRIES.execute(connection, entries)


@event.listens_for(Session, "after_transaction_end")
def _forget_pending(session: Session, transaction: Any) -> None:
    # Entries of a transaction that ended without a commit (rollback, close) describe
    # changes that did not happen. A savepoint ending leaves the outer transaction's alone.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)

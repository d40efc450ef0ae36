"""Entries of the change feed that the mailing list follows (issue: export and sync).

Written by the use cases, in their own transaction, whenever what the list must know changes.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import insert

from ..extensions import db
from ..models import ChangeKind, Contact, SubscriberChange, Topic

#: Built once: the confirmation, the one-click unsubscribe and the preference page use it.
_INSERT = insert(SubscriberChange.__table__)


def record(kind: ChangeKind, contact: Contact, topic: Topic | None = None) -> None:
    """Add a feed entry for ``contact`` (and ``topic``) to the caller's transaction."""
    db.session.add(
        SubscriberChange(
            kind=kind,
            subscriber_id=contact.public_id,
            topic_id=topic.id if topic else None,
            # Only a tombstone carries the address: the list needs it to find the member.
            email=contact.email if kind is ChangeKind.ERASED else None,
        )
    )


def record_topics(kind: ChangeKind, subscriber_id: str, topic_ids: Iterable[int | None]) -> None:
    """The entries ``record`` would add for these topics (None: the person, not a topic), as
    one statement in the caller's transaction, for the pages that must stay fast.

    ``subscriber_id`` is the contact's ``public_id``.
    """
    record_entries(subscriber_id, [(kind, topic_id) for topic_id in topic_ids])


def record_entries(subscriber_id: str, entries: Iterable[tuple[ChangeKind, int | None]]) -> None:
    """Like ``record_topics``, with a kind per entry; written in the order given.

    Never for an erasure: its tombstone carries the address, which only ``record`` writes.
    """
    rows = []
    for kind, topic_id in entries:
        if kind is ChangeKind.ERASED:
            raise ValueError("an erasure tombstone is written by record()")
        rows.append(
            {"kind": kind, "subscriber_id": subscriber_id, "topic_id": topic_id, "email": None}
        )
    if rows:
        db.session.connection().execute(_INSERT, rows)

"""Entries of the change feed that the mailing list follows (issue: export and sync).

Written by the use cases, in their own transaction, whenever what the list must know changes.
"""

from __future__ import annotations

from ..extensions import db
from ..models import ChangeKind, Contact, SubscriberChange, Topic


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

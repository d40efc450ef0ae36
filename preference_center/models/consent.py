"""The consent texts and the append-only consent ledger."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .types import (
    ConsentAction,
    UTCDateTime,
    _enum,
    utcnow,
)


class ConsentText(db.Model):
    """A published consent statement. Never edited: a change is a new version."""

    __tablename__ = "consent_text"
    __table_args__ = (UniqueConstraint("kind", "language", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), default="signup")
    language: Mapped[str] = mapped_column(String(2))
    version: Mapped[int]
    body: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @staticmethod
    def hash_body(body: str) -> str:
        """The SHA-256 of the exact text shown, so a record proves what the person read."""
        return hashlib.sha256(body.encode("utf-8")).hexdigest()


class ConsentEvent(db.Model):
    """The append-only consent ledger: one row per consent given, changed or withdrawn.

    Rows are never updated except to scrub personal data (IP and user agent after the
    retention period, the contact link on erasure); see ``_ledger_is_append_only``.
    """

    __tablename__ = "consent_event"
    __table_args__ = (Index("ix_consent_event_contact_occurred", "contact_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="SET NULL"))
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("topic.id", ondelete="SET NULL"))
    action: Mapped[ConsentAction] = mapped_column(_enum(ConsentAction))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: web-form, preference-page, one-click, import, api, cli...
    channel: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    language: Mapped[str] = mapped_column(String(2))
    consent_text_id: Mapped[int | None] = mapped_column(ForeignKey("consent_text.id"))
    consent_text_sha256: Mapped[str | None] = mapped_column(String(64))
    import_batch_id: Mapped[int | None]
    #: The signup request this event belongs to (no foreign key: requests are purged, the
    #: ledger stays).
    request_id: Mapped[int | None] = mapped_column(index=True)
    #: Message-ID of the email involved (the confirmation request, for instance).
    message_id: Mapped[str | None] = mapped_column(String(255))


#: Columns of the ledger that may change after insert: only to remove personal data.
LEDGER_SCRUBBABLE = frozenset({"contact_id", "ip", "user_agent"})


@event.listens_for(ConsentEvent, "before_update")
def _ledger_is_append_only(mapper: Any, connection: Any, target: ConsentEvent) -> None:
    changed = {attr.key for attr in db.inspect(target).attrs if attr.history.has_changes()}
    if changed - LEDGER_SCRUBBABLE:
        raise ValueError(f"the consent ledger is append-only; refused to change {changed}")

"""The outbox: emails written with the change that causes them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .types import (
    OutboxStatus,
    UTCDateTime,
    _enum,
    utcnow,
)

if TYPE_CHECKING:  # annotations only; SQLAlchemy resolves them by class name
    from .contacts import Contact


class OutboxMessage(db.Model):
    """An email to send, written in the same transaction as the change that causes it.

    The worker claims rows with a lease (``locked_by``/``locked_until``), sends them and marks
    them sent one by one, so a crash repeats at most the message in flight (at-least-once,
    with the same Message-ID).
    """

    __tablename__ = "outbox_message"
    __table_args__ = (Index("ix_outbox_message_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Stable Message-ID, the same on every delivery attempt of this row.
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    template: Mapped[str] = mapped_column(String(64))
    #: transactional, confirmation (capped per hour, C10) or marketing (List-Unsubscribe).
    category: Mapped[str] = mapped_column(String(16), default="transactional")
    #: The address exactly as given to SMTP: the canonical address, domain in IDNA 2008 ASCII.
    to_address: Mapped[str] = mapped_column(String(254))
    to_name: Mapped[str | None] = mapped_column(String(100))
    language: Mapped[str] = mapped_column(String(2))
    #: Template variables: opaque ids and plain values, never secrets or tokens.
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contact.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[OutboxStatus] = mapped_column(_enum(OutboxStatus), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_by: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    contact: Mapped[Contact | None] = relationship()

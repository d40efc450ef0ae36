"""What the mailing list uses to stay in step: API tokens, webhooks and their deliveries."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .types import UTCDateTime, _enum, utcnow


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    #: Gave up after WEBHOOK_MAX_ATTEMPTS; the webhook waits until an admin retries.
    DEAD = "dead"


class ApiToken(db.Model):
    """A consumer of the export API (one per mailing list or ESP integration).

    Only a SHA-256 of the token is stored: tokens are random, so a plain hash is enough and
    a stolen database yields nothing usable (L1). ``cursor`` is the highest change id the
    consumer has acknowledged (by asking for the page after it); it drives the lag check and
    tells when an erased address may be scrubbed from the feed.
    """

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The first characters of the token, shown in listings to tell tokens apart.
    prefix: Mapped[str] = mapped_column(String(16))
    #: Topic ids the token may read; None means every topic.
    topic_ids: Mapped[list[int] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cursor: Mapped[int] = mapped_column(default=0, server_default="0")
    cursor_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class Webhook(db.Model):
    """A URL that receives the change feed pushed, signed, in order (at least once)."""

    __tablename__ = "webhook"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    #: The shared HMAC-SHA256 key; the receiver needs it in clear, so it is stored in clear.
    secret: Mapped[str] = mapped_column(String(200))
    topic_ids: Mapped[list[int] | None] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Highest change id the receiver accepted (2xx).
    cursor: Mapped[int] = mapped_column(default=0, server_default="0")
    cursor_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    #: Which worker is pushing to this webhook right now: one at a time keeps the order.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    deliveries: Mapped[list[WebhookDelivery]] = relationship(
        back_populates="webhook", cascade="all, delete-orphan", passive_deletes=True
    )


class WebhookDelivery(db.Model):
    """One POST of a page of the feed: the range, never the data.

    The body is rendered again at each attempt from the change ids, so no personal data
    waits in this table, and an address erased meanwhile is not pushed after all.
    """

    __tablename__ = "webhook_delivery"
    # Every query reads a webhook's deliveries in order (dispatcher, admin page, CLI).
    __table_args__ = (Index("ix_webhook_delivery_webhook", "webhook_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhook.id", ondelete="CASCADE"))
    after: Mapped[int]
    last_change_id: Mapped[int]
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)

    webhook: Mapped[Webhook] = relationship(back_populates="deliveries")

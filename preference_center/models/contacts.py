"""People, topics and subscriptions, the requests that lead to them, and what they leave behind."""

from __future__ import annotations

import secrets
import uuid
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .types import (
    AddressKind,
    ChangeKind,
    ContactSource,
    RequestStatus,
    SubscriptionStatus,
    SuppressionReason,
    UTCDateTime,
    _enum,
    utcnow,
)

if TYPE_CHECKING:  # annotations only; SQLAlchemy resolves them by class name
    from .consent import ConsentText


class Contact(db.Model):
    """A person (or an organisation's role address) we may email, identified by address."""

    __tablename__ = "contact"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Stable, opaque id given to the mailing list; never the database id.
    public_id: Mapped[str] = mapped_column(
        String(36), unique=True, default=lambda: str(uuid.uuid4())
    )
    #: Canonical form used for lookups and uniqueness (see addresses.canonical).
    email: Mapped[str] = mapped_column(String(254), unique=True)
    #: The address as the person typed it (Unicode domain kept), for display.
    email_display: Mapped[str] = mapped_column(String(254))
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    company: Mapped[str | None] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(2), default="en")
    source: Mapped[ContactSource] = mapped_column(_enum(ContactSource))
    address_kind: Mapped[AddressKind] = mapped_column(
        _enum(AddressKind), default=AddressKind.PERSONAL
    )
    #: Permanent delivery failures; at OUTBOX_HARD_BOUNCE_LIMIT no more mail is sent.
    hard_bounces: Mapped[int] = mapped_column(default=0)
    #: Part of every "manage" link; raising it revokes all links sent so far.
    manage_version: Mapped[int] = mapped_column(default=1)
    #: Raised by every change of preferences, so a save from a stale tab is refused (F3).
    prefs_version: Mapped[int] = mapped_column(default=1)
    #: No newsletters until this moment (a pause chosen on the preference page).
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The event list the address came from, for imported contacts (GDPR Art. 14(2)(f)).
    import_batch_id: Mapped[int | None] = mapped_column(
        ForeignKey("import_batch.id", ondelete="SET NULL", use_alter=True)
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="contact", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<Contact {self.id} {self.language}>"  # no address: reprs end up in logs


class Topic(db.Model):
    """Something a person can subscribe to, named and described in every language."""

    __tablename__ = "topic"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name_nl: Mapped[str] = mapped_column(String(120))
    name_fr: Mapped[str] = mapped_column(String(120))
    name_en: Mapped[str] = mapped_column(String(120))
    description_nl: Mapped[str] = mapped_column(Text, default="")
    description_fr: Mapped[str] = mapped_column(Text, default="")
    description_en: Mapped[str] = mapped_column(Text, default="")
    #: Why we process data for this topic, for the register of processing (Art. 30).
    purpose: Mapped[str] = mapped_column(Text, default="")
    is_public: Mapped[bool] = mapped_column(default=True)
    position: Mapped[int] = mapped_column(default=0)
    #: Frequencies a subscriber may choose, e.g. ["every-issue", "monthly"]; empty: no choice.
    frequencies: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def name(self, language: str) -> str:
        """The topic's name in ``language``, falling back to English."""
        return getattr(self, f"name_{language}", None) or self.name_en

    def description(self, language: str) -> str:
        """The topic's description in ``language``, falling back to English."""
        return getattr(self, f"description_{language}", None) or self.description_en


class Subscription(db.Model):
    """One contact's relation to one topic. ``version`` makes concurrent updates detectable."""

    __tablename__ = "subscription"
    __table_args__ = (UniqueConstraint("contact_id", "topic_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    topic_id: Mapped[int] = mapped_column(ForeignKey("topic.id", ondelete="RESTRICT"))
    status: Mapped[SubscriptionStatus] = mapped_column(
        _enum(SubscriptionStatus), default=SubscriptionStatus.PENDING
    )
    frequency: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(default=1)

    contact: Mapped[Contact] = relationship(back_populates="subscriptions")
    topic: Mapped[Topic] = relationship()

    # Optimistic locking: an UPDATE that finds another version raises StaleDataError.
    __mapper_args__ = {"version_id_col": version}


class SignupRequest(db.Model):
    """A request to subscribe that waits for its confirmation click (double opt-in).

    The confirmation link points at ``public_id`` (random, opaque); confirming flips ``status``
    once, so a link works once and never after an unsubscribe cancelled the request.
    """

    __tablename__ = "signup_request"
    __table_args__ = (Index("ix_signup_request_status_expires", "status", "expires_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(32), unique=True, default=lambda: secrets.token_urlsafe(16)
    )
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contact.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[RequestStatus] = mapped_column(
        _enum(RequestStatus), default=RequestStatus.PENDING
    )
    #: Ids of the topics asked for.
    topic_ids: Mapped[list[int]] = mapped_column(JSON)
    language: Mapped[str] = mapped_column(String(2))
    #: Only the first name may appear in emails; nothing else typed by a visitor does.
    first_name: Mapped[str | None] = mapped_column(String(100))
    #: Campaign or event label from the form's URL (a QR code at a booth, for instance).
    source_label: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(64), default="web-form")
    #: Set when the request is a permission email to an imported contact.
    import_batch_id: Mapped[int | None] = mapped_column(
        ForeignKey("import_batch.id", ondelete="SET NULL", use_alter=True), index=True
    )
    consent_text_id: Mapped[int | None] = mapped_column(ForeignKey("consent_text.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: When the confirmation email last left; the link's lifetime counts from here (E5).
    emailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: After this the request cannot be confirmed, purged or not (A9).
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    contact: Mapped[Contact] = relationship()
    consent_text: Mapped[ConsentText | None] = relationship()


class EmailChangeRequest(db.Model):
    """A new address waiting for its own confirmation; nothing moves until then (D10)."""

    __tablename__ = "email_change_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(32), unique=True, default=lambda: secrets.token_urlsafe(16)
    )
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contact.id", ondelete="CASCADE"), index=True
    )
    new_email: Mapped[str] = mapped_column(String(254))
    new_email_display: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[RequestStatus] = mapped_column(
        _enum(RequestStatus), default=RequestStatus.PENDING
    )

    contact: Mapped[Contact] = relationship()


class Suppression(db.Model):
    """Addresses we must not mail, kept as a keyed HMAC of the canonical address.

    Not a plain hash: a dictionary of common addresses would reverse that. The key is a
    setting of its own and can be rotated (see ``services.suppression``).
    """

    __tablename__ = "suppression"

    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[SuppressionReason] = mapped_column(_enum(SuppressionReason))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: None: for good. A date: a temporary block ("this was not me").
    until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LeaveReason(db.Model):
    """Why someone left, for the marketers' statistics. Never linked to the person."""

    __tablename__ = "leave_reason"

    id: Mapped[int] = mapped_column(primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))
    comment: Mapped[str | None] = mapped_column(String(500))
    language: Mapped[str] = mapped_column(String(2))
    #: Rounded to the day: an exact time could be matched with the unsubscribe itself.
    day: Mapped[date]


class PurgeLog(db.Model):
    """What the retention job removed: counts only, no personal data (K5)."""

    __tablename__ = "purge_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    ran_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(64))
    count: Mapped[int]


class SubscriberChange(db.Model):
    """The change feed for the mailing list: every addition *and* removal, in order.

    The id is the cursor. An erasure leaves a tombstone holding only what the list needs to
    delete the member (its stable id and canonical address); the address is scrubbed later.
    """

    __tablename__ = "subscriber_change"
    __table_args__ = (Index("ix_subscriber_change_topic_id", "topic_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[ChangeKind] = mapped_column(_enum(ChangeKind))
    #: Contact.public_id: stable, and still meaningful after the contact is gone.
    subscriber_id: Mapped[str] = mapped_column(String(36), index=True)
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("topic.id", ondelete="SET NULL"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Only on erasure tombstones; cleared after SYNC_TOMBSTONE_DAYS.
    email: Mapped[str | None] = mapped_column(String(254))

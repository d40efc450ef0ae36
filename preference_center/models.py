"""The data model: contacts, topics, subscriptions, the consent ledger and the outbox.

Models hold data and small invariants only; they never commit. State changes happen in the
service functions, which write the consent ledger and the outbox in the same transaction.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db


def utcnow() -> datetime:
    """Now, in UTC, timezone-aware: the only clock the models use."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC and returns aware UTC, so SQLite and PostgreSQL behave the same.

    SQLite has no time zone type; without this, values read back would be naive and every
    comparison with ``utcnow()`` would raise.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use preference_center.models.utcnow()")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def _enum(cls: type[enum.Enum]) -> Enum:
    # VARCHAR rather than a native enum: adding a value later is then a code change, not a
    # migration that PostgreSQL can't run inside a transaction.
    return Enum(
        cls,
        native_enum=False,
        length=32,
        validate_strings=True,
        values_callable=lambda members: [m.value for m in members],
    )


class AddressKind(enum.StrEnum):
    PERSONAL = "personal"
    ROLE = "role"  # info@, sales@, ...: an impersonal address of an organisation
    DISPOSABLE = "disposable"


class ContactSource(enum.StrEnum):
    FORM = "form"
    IMPORT = "import"
    API = "api"
    CLI = "cli"


class SubscriptionStatus(enum.StrEnum):
    PENDING = "pending"
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"


class ConsentAction(enum.StrEnum):
    REQUESTED = "requested"
    CONFIRMED = "confirmed"
    WITHDRAWN = "withdrawn"
    UPDATED = "updated"
    REPERMISSION_SENT = "repermission-sent"
    OBJECTED = "objected"
    ERASED = "erased"
    BOUNCED = "bounced"


class RequestStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"  # "this was not me", or withdrawn by an unsubscribe


class SuppressionReason(enum.StrEnum):
    ERASED = "erased"  # the person asked to be forgotten
    OBJECTED = "objected"  # "never contact me" (Art. 21)
    NOT_ME = "not-me"  # someone else's signup; blocks mail for a limited time


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # permanent: a 5xx reply, too many bounces, or retries exhausted
    CANCELLED = "cancelled"  # no longer wanted (the request it belonged to was withdrawn)


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


class PurgeLog(db.Model):
    """What the retention job removed: counts only, no personal data (K5)."""

    __tablename__ = "purge_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    ran_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(64))
    count: Mapped[int]


class ChangeKind(enum.StrEnum):
    SUBSCRIBED = "subscribed"
    UPDATED = "updated"
    UNSUBSCRIBED = "unsubscribed"
    ERASED = "erased"
    BOUNCED = "bounced"


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


class LeaveReason(db.Model):
    """Why someone left, for the marketers' statistics. Never linked to the person."""

    __tablename__ = "leave_reason"

    id: Mapped[int] = mapped_column(primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))
    comment: Mapped[str | None] = mapped_column(String(500))
    language: Mapped[str] = mapped_column(String(2))
    #: Rounded to the day: an exact time could be matched with the unsubscribe itself.
    day: Mapped[date]


class Role(enum.StrEnum):
    ADMIN = "admin"  # users and settings
    MARKETER = "marketer"  # imports, campaigns, topics
    DPO = "dpo"  # read-only: consent ledger, audit log, register, rights requests


class User(db.Model):
    """A member of staff who signs in (subscribers never do)."""

    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Part of the session: raising it signs the user out everywhere (deactivation, new role).
    session_version: Mapped[int] = mapped_column(default=1)

    # Flask-Login's protocol, written out rather than inherited from UserMixin, so that the
    # session id carries the version and a deactivated account is out at its next request.
    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"


class AuditEntry(db.Model):
    """Who did what, when, from where: append-only, visible to admins and the DPO."""

    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_entry_at", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The staff member's address at the time (kept if the account is deleted later).
    actor: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(255))
    ip: Mapped[str | None] = mapped_column(String(45))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


@event.listens_for(AuditEntry, "before_update")
def _audit_is_append_only(mapper: Any, connection: Any, target: AuditEntry) -> None:
    raise ValueError("the audit log is append-only")


class CollectedBy(enum.StrEnum):
    BUSINESS_CARD = "business-card"
    BADGE_SCAN = "badge-scan"
    SHEET = "sheet"
    OTHER = "other"


class ImportStatus(enum.StrEnum):
    PREVIEW = "preview"  # uploaded, the marketer is checking the columns
    QUEUED = "queued"
    IMPORTING = "importing"
    IMPORTED = "imported"
    FAILED = "failed"


class ImportOutcome(enum.StrEnum):
    NEW = "new"  # will be asked for permission
    ALREADY_SUBSCRIBED = "already-subscribed"  # never mailed again
    UNSUBSCRIBED = "unsubscribed"  # left earlier: never mailed again
    DUPLICATE = "duplicate"  # a second time in the same file
    SUPPRESSED = "suppressed"  # erased or refused: never mailed
    ASKED_RECENTLY = "asked-recently"  # asked within the last 12 months (G14)
    INVALID = "invalid"


class ImportBatch(db.Model):
    """One uploaded file of event contacts, with its mandatory provenance (G17)."""

    __tablename__ = "import_batch"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_name: Mapped[str] = mapped_column(String(200))
    event_date: Mapped[date]
    collected_by: Mapped[CollectedBy] = mapped_column(_enum(CollectedBy))
    uploaded_by: Mapped[str] = mapped_column(String(254))
    filename: Mapped[str] = mapped_column(String(255))
    file_sha256: Mapped[str] = mapped_column(String(64))
    #: The reading options confirmed in the preview: encoding, delimiter, sheet, mapping.
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: Language of the permission email when the file gives none.
    language: Mapped[str] = mapped_column(String(2), default="nl")
    status: Mapped[ImportStatus] = mapped_column(_enum(ImportStatus), default=ImportStatus.QUEUED)
    counts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    #: The permission campaign: what we ask for, when we asked, until when we wait.
    topic_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    mailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Campaign results that outlive the contacts: refused, purged.
    tallies: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    rows_read: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    imported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ImportRow(db.Model):
    """One line of the per-row report; personal data goes with the batch at its deadline."""

    __tablename__ = "import_row"
    __table_args__ = (Index("ix_import_row_batch_outcome", "batch_id", "outcome"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("import_batch.id", ondelete="CASCADE"))
    line: Mapped[int]
    email: Mapped[str] = mapped_column(String(320))
    outcome: Mapped[ImportOutcome] = mapped_column(_enum(ImportOutcome))
    reason: Mapped[str | None] = mapped_column(String(64))
    address_kind: Mapped[AddressKind | None] = mapped_column(_enum(AddressKind))
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contact.id", ondelete="SET NULL"), index=True
    )


class AskedMarker(db.Model):
    """Keyed HMAC of an address asked for permission, and when: never ask twice a year (G14)."""

    __tablename__ = "asked_marker"

    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

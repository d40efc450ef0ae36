"""Column types, the clock and the enumerations every model uses."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    Enum,
    TypeDecorator,
)


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


class ChangeKind(enum.StrEnum):
    SUBSCRIBED = "subscribed"
    UPDATED = "updated"
    UNSUBSCRIBED = "unsubscribed"
    ERASED = "erased"
    BOUNCED = "bounced"


class Role(enum.StrEnum):
    ADMIN = "admin"  # users and settings
    MARKETER = "marketer"  # imports, campaigns, topics
    DPO = "dpo"  # read-only: consent ledger, audit log, register, rights requests


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

"""Staff accounts and the append-only audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Index,
    String,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .types import (
    Role,
    UTCDateTime,
    _enum,
    utcnow,
)


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

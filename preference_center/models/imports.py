"""Event contact lists: batches with their provenance, per-row reports, asked-on markers."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .types import (
    AddressKind,
    CollectedBy,
    ImportOutcome,
    ImportStatus,
    UTCDateTime,
    _enum,
    utcnow,
)


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

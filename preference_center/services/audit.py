"""The audit log: every staff action that matters, written in the action's own transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ..extensions import db
from ..models import AuditEntry


def record(
    actor: str, action: str, target: str | None = None, *, ip: str | None = None, **detail: Any
) -> None:
    """Add an entry to the caller's transaction (it commits with the change it describes)."""
    db.session.add(AuditEntry(actor=actor, action=action, target=target, ip=ip, detail=detail))


def latest(limit: int = 200, before_id: int | None = None) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return list(db.session.scalars(query))

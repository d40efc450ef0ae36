"""Outbox rows written with one Core INSERT, for the use cases that must stay fast.

Each is the row ``mail.outbox.enqueue`` adds through the ORM (the same values, from
``mail.outbox.row_values``), without the unit of work that a signup or a confirmation would
otherwise pay for it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert

from .. import addresses
from ..mail.outbox import row_values
from ..models import OutboxMessage, OutboxStatus
from .prepared import Prepared

#: On SQLite without SQLAlchemy's per-execution work (prepared.py): signup and confirmation.
_INSERT = Prepared(insert(OutboxMessage.__table__))


def ascii_address(canonical: str) -> str:
    """What SMTP gets for a canonical address (``Address.ascii``): an address that is all
    ASCII already is that form, so only the others need email-validator again."""
    return canonical if canonical.isascii() else addresses.parse(canonical).ascii


def queue(
    connection: Connection,
    template: str,
    to_address: str,
    language: str,
    *,
    to_name: str | None,
    context: dict[str, Any],
    contact_id: int | None,
    category: str = "transactional",
) -> str:
    """Add an email to the transaction of ``connection``; returns its Message-ID.

    ``to_address`` is the ASCII form SMTP gets (``Address.ascii``, or ``ascii_address``).
    """
    values = row_values(template, to_address, language, to_name, context, category)
    _INSERT.execute(connection, {**values, "contact_id": contact_id})
    return str(values["message_id"])


def complete_row(
    template: str,
    to_address: str,
    language: str,
    *,
    to_name: str | None,
    context: dict[str, Any],
    contact_id: int | None,
    category: str,
    now: datetime,
) -> dict[str, Any]:
    """Every column ``queue`` writes, the table's defaults included, for a statement to which
    SQLAlchemy applies no Python defaults (one with CTEs, as a confirmation on PostgreSQL)."""
    values = row_values(template, to_address, language, to_name, context, category)
    values.update(
        contact_id=contact_id,
        status=OutboxStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    return values

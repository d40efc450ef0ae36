"""Outbox rows written with one Core INSERT, for the use cases that must stay fast.

Each is the row ``mail.outbox.enqueue`` adds through the ORM (the same columns, the same
values, a Message-ID from the same function), without the unit of work that a signup or a
confirmation would otherwise pay for it. Keep the two in step.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert

from .. import addresses
from ..mail import messages
from ..models import OutboxMessage

_INSERT = insert(OutboxMessage.__table__)


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
    message_id = messages.new_message_id()
    connection.execute(
        _INSERT,
        {
            "message_id": message_id,
            "template": template,
            "category": category,
            "to_address": to_address,
            # The column holds 100 characters; the header cuts further (messages.MAX_DISPLAY_NAME).
            "to_name": to_name[:100] if to_name else None,
            "language": language,
            "context": context,
            "contact_id": contact_id,
        },
    )
    return message_id

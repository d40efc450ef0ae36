"""Operational use cases: test messages and the outbox worker's entry point."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from .. import addresses
from ..extensions import db
from ..mail import outbox
from ..models import OutboxMessage


def send_test_message(raw_address: str, language: str) -> OutboxMessage:
    """Queue the test email to ``raw_address``; the worker delivers it like any other."""
    address = addresses.parse(raw_address)
    row = outbox.enqueue("test", address, language, context={"address": address.display})
    db.session.commit()
    return row


def health() -> dict[str, Any]:
    """A cheap check that the database answers, for /health."""
    db.session.execute(select(1))
    db.session.rollback()
    return {"status": "ok"}

"""Is the mailing list in step? The lag check (L3) and the reconciliation with its export (L6)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from .. import addresses, suppression
from ..extensions import db
from ..models import (
    ApiToken,
    Contact,
    SubscriberChange,
    Subscription,
    SubscriptionStatus,
    Topic,
    Webhook,
    utcnow,
)
from .feed import REMOVALS, high_water, in_scope, iso


@dataclass
class ConsumerStatus:
    kind: str  # "api-token" or "webhook"
    name: str
    cursor: int
    last_read_at: str | None
    pending_changes: int
    pending_removals: int
    oldest_removal_at: str | None
    oldest_removal_hours: float | None
    late: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def status(now: datetime | None = None) -> dict[str, Any]:
    """Each consumer's position in the feed and how long its oldest unread removal waited.

    ``ok`` is false when a removal has waited longer than SYNC_LAG_ALERT_HOURS: a scheduler
    alerts on that well before the 48 hours Gmail and Yahoo allow for an unsubscribe.
    """
    now = now or utcnow()
    threshold = float(current_app.config["SYNC_LAG_ALERT_HOURS"])
    consumers: list[ConsumerStatus] = []
    tokens = db.session.scalars(select(ApiToken).where(ApiToken.revoked_at.is_(None)))
    for token in tokens:
        consumers.append(
            _consumer(
                "api-token",
                token.name,
                token.cursor,
                token.cursor_at,
                token.topic_ids,
                now,
                threshold,
            )
        )
    for hook in db.session.scalars(select(Webhook).where(Webhook.active)):
        consumers.append(
            _consumer(
                "webhook",
                f"#{hook.id} {hook.url}",
                hook.cursor,
                hook.cursor_at,
                hook.topic_ids,
                now,
                threshold,
            )
        )
    return {
        "ok": not any(c.late for c in consumers),
        "checked_at": iso(now),
        "threshold_hours": threshold,
        "high_water": high_water(),
        "consumers": [c.as_dict() for c in consumers],
    }


def _consumer(
    kind: str,
    name: str,
    cursor: int,
    cursor_at: datetime | None,
    topic_ids: list[int] | None,
    now: datetime,
    threshold: float,
) -> ConsumerStatus:
    removal = SubscriberChange.kind.in_(REMOVALS)
    pending, removals, oldest = db.session.execute(
        in_scope(
            select(
                func.count(),
                func.count().filter(removal),
                func.min(SubscriberChange.occurred_at).filter(removal),
            ).where(SubscriberChange.id > cursor),
            topic_ids,
        )
    ).one()
    hours = (now - oldest).total_seconds() / 3600 if oldest else None
    return ConsumerStatus(
        kind=kind,
        name=name,
        cursor=cursor,
        last_read_at=iso(cursor_at),
        pending_changes=pending,
        pending_removals=removals,
        oldest_removal_at=iso(oldest),
        oldest_removal_hours=round(hours, 2) if hours is not None else None,
        late=hours is not None and hours > threshold,
    )


def scrub_floor() -> int | None:
    """The highest change id every active consumer has read; None when there are none."""
    cursors = [
        *db.session.scalars(select(ApiToken.cursor).where(ApiToken.revoked_at.is_(None))),
        *db.session.scalars(select(Webhook.cursor).where(Webhook.active)),
    ]
    return min(cursors) if cursors else None


@dataclass
class Finding:
    line: int
    email: str
    #: unsubscribed | erased | bounced | never-confirmed | unknown | invalid
    reason: str


def reconcile(rows: Iterable[Any], topic: Topic | None) -> tuple[int, list[Finding]]:
    """Addresses the mailing list still holds although we removed them (L6).

    ``rows`` come from the list's own export (any format the importer reads). Returns the
    number of addresses checked and the findings, in file order. An address we hold as a
    confirmed subscriber (of ``topic``, or of any topic) is fine; everything else is a
    finding: the list must delete it.
    """
    checked = 0
    findings: list[Finding] = []
    for row in rows:
        raw = (row.email or "").strip()
        if not raw:
            continue
        try:
            canonical = addresses.parse(raw).canonical
        except addresses.InvalidAddress:
            findings.append(Finding(row.line, raw, "invalid"))
            continue
        checked += 1
        reason = _reason(canonical, topic)
        if reason:
            findings.append(Finding(row.line, canonical, reason))
    return checked, findings


def _reason(canonical: str, topic: Topic | None) -> str | None:
    contact = db.session.execute(
        select(Contact.id, Contact.hard_bounces).where(Contact.email == canonical)
    ).first()
    if contact is None:
        return "erased" if suppression.reason(canonical) is not None else "unknown"
    contact_id = contact.id
    if contact.hard_bounces >= int(current_app.config["OUTBOX_HARD_BOUNCE_LIMIT"]):
        return "bounced"
    query = select(Subscription.status, Subscription.confirmed_at).where(
        Subscription.contact_id == contact_id
    )
    if topic is not None:
        query = query.where(Subscription.topic_id == topic.id)
    states = db.session.execute(query).all()
    if any(s.status is SubscriptionStatus.SUBSCRIBED for s in states):
        return None
    if any(s.confirmed_at is not None for s in states):
        return "unsubscribed"
    return "never-confirmed"

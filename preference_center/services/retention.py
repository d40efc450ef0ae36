"""Retention: delete what we may no longer keep, and keep only anonymous counts of it.

``flask retention purge`` runs this; schedule it daily (cron, a systemd timer, a Kubernetes
CronJob). It is idempotent and resumable: each step works in chunks and commits per chunk,
so a purge that is stopped halfway simply continues on its next run.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, exists, select, update

from ..extensions import db
from ..models import (
    ConsentEvent,
    Contact,
    ContactSource,
    DeliveryStatus,
    PurgeLog,
    RequestStatus,
    SignupRequest,
    SubscriberChange,
    Subscription,
    Suppression,
    WebhookDelivery,
    utcnow,
)
from . import repermission, sync
from .subscriptions import lock_contact, scrub_ledger, scrub_request_events

CHUNK = 500


def purge(now: datetime | None = None) -> dict[str, int]:
    """Run every retention rule once; returns how many rows each rule touched."""
    now = now or utcnow()
    counts = {
        "expired_requests": _expired_requests(now),
        "unconfirmed_contacts": _unconfirmed_contacts(now),
        "consent_client_data": _truncate_client_data(now),
        "expired_blocks": _expired_blocks(now),
        "erasure_tombstones": _scrub_tombstones(now),
        "sent_webhook_deliveries": _sent_deliveries(now),
        "unconfirmed_imported_contacts": repermission.purge_expired(now),
    }
    for kind, count in counts.items():
        if count:
            db.session.add(PurgeLog(kind=kind, count=count, ran_at=now))
    db.session.commit()
    return counts


def _expired_requests(now: datetime) -> int:
    """Pending requests past their deadline plus the grace for "send me a new link" (K5)."""
    grace = timedelta(days=int(current_app.config["PENDING_GRACE_DAYS"]))
    total = 0
    while True:
        ids = db.session.scalars(
            select(SignupRequest.id)
            .where(
                SignupRequest.status != RequestStatus.CONFIRMED,
                SignupRequest.expires_at < now - grace,
            )
            .limit(CHUNK)
        ).all()
        if not ids:
            return total
        # The status condition is repeated in the DELETE: a request confirmed since the
        # SELECT is not touched (F7). Confirmed requests are kept as part of the proof.
        deleted = db.session.scalars(
            delete(SignupRequest)
            .where(SignupRequest.id.in_(ids), SignupRequest.status != RequestStatus.CONFIRMED)
            .returning(SignupRequest.id)
        ).all()
        if deleted:
            scrub_request_events(list(deleted))
        db.session.commit()
        total += len(deleted)


def _unconfirmed_contacts(now: datetime) -> int:
    """Contacts from the form left with nothing: no subscription, no request (K5).

    Each candidate is locked first (the same lock a signup or a confirmation takes), then
    checked again: a signup that arrived meanwhile keeps its contact (F7).
    """
    grace = timedelta(days=int(current_app.config["PENDING_GRACE_DAYS"]))
    nothing_left = ~exists().where(Subscription.contact_id == Contact.id) & ~exists().where(
        SignupRequest.contact_id == Contact.id
    )
    total = 0
    last_id = 0
    while True:
        ids = db.session.scalars(
            select(Contact.id)
            .where(
                Contact.id > last_id,
                Contact.source == ContactSource.FORM,
                Contact.created_at < now - grace,
                nothing_left,
            )
            .order_by(Contact.id)
            .limit(CHUNK)
        ).all()
        db.session.commit()
        if not ids:
            return total
        last_id = ids[-1]
        for contact_id in ids:
            lock_contact(contact_id)
            still_empty = db.session.scalar(
                select(Contact.id).where(Contact.id == contact_id, nothing_left)
            )
            if still_empty is not None:
                scrub_ledger(contact_id)
                db.session.execute(delete(Contact).where(Contact.id == contact_id))
                total += 1
            db.session.commit()


def _truncate_client_data(now: datetime) -> int:
    """IP addresses in old ledger entries lose their host part; user agents go (K7).

    The entry itself stays: it still proves when and how consent was given.
    """
    months = int(current_app.config["CONSENT_CLIENT_DATA_MONTHS"])
    cutoff = now - timedelta(days=30 * months)
    total = 0
    last_id = 0
    while True:
        rows = db.session.execute(
            select(ConsentEvent.id, ConsentEvent.ip)
            .where(
                ConsentEvent.id > last_id,
                ConsentEvent.occurred_at < cutoff,
                (ConsentEvent.user_agent.is_not(None))
                | (ConsentEvent.ip.is_not(None) & ~ConsentEvent.ip.like("%/%")),
            )
            .order_by(ConsentEvent.id)
            .limit(CHUNK)
        ).all()
        if not rows:
            db.session.commit()
            return total
        last_id = rows[-1].id
        for row in rows:
            db.session.execute(
                update(ConsentEvent)
                .where(ConsentEvent.id == row.id)
                .values(ip=truncate_ip(row.ip), user_agent=None)
                .execution_options(synchronize_session=False)
            )
        db.session.commit()
        total += len(rows)


def truncate_ip(ip: str | None) -> str | None:
    """``203.0.113.57`` -> ``203.0.113.0/24``; IPv6 keeps its /48. Not an address any more."""
    if not ip or "/" in ip:
        return ip
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def _expired_blocks(now: datetime) -> int:
    result = db.session.execute(
        delete(Suppression).where(Suppression.until.is_not(None), Suppression.until < now)
    )
    db.session.commit()
    return result.rowcount or 0


def _sent_deliveries(now: datetime) -> int:
    """Delivered webhook pages: kept a week to answer "did you send it?", then dropped."""
    result = db.session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.status == DeliveryStatus.SENT,
            WebhookDelivery.delivered_at < now - timedelta(days=7),
        )
    )
    db.session.commit()
    return result.rowcount or 0


def _scrub_tombstones(now: datetime) -> int:
    """Erased addresses leave the change feed once the mailing list had time to act (K3)."""
    cutoff = now - timedelta(days=int(current_app.config["SYNC_TOMBSTONE_DAYS"]))
    query = update(SubscriberChange).where(
        SubscriberChange.email.is_not(None), SubscriberChange.occurred_at < cutoff
    )
    # Only once every consumer has read past the tombstone: a list that was down for a
    # month must still learn which address to delete (issue: export and sync).
    floor = sync.scrub_floor()
    if floor is not None:
        query = query.where(SubscriberChange.id <= floor)
    result = db.session.execute(query.values(email=None))
    db.session.commit()
    return result.rowcount or 0

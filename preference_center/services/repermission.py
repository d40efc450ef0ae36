"""Asking imported contacts for permission: one neutral email, one reminder at most, a deadline.

Belgian practice (FOD Economie) tolerates one email that asks for consent, if it carries no
advertising and has a clear subject; silence means no. So:

* each new contact of a batch gets one permission email in its language, naming the event and
  date where the address was collected (GDPR Art. 14(2)(f)), with one "yes" link (a page with
  a button) and one "no, never contact me" link (H1, H3);
* one reminder, only to those who neither confirmed nor refused (H2's configurable exception);
* at the deadline, whoever did not confirm is purged by ``flask retention purge``, leaving
  counts and the keyed "asked on" marker, so the same card uploaded again is not asked twice.

Every address is checked again when the email is queued: an address suppressed, unsubscribed
or subscribed since the import is skipped (F4, G13).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, func, select, update

from .. import suppression
from ..extensions import db
from ..mail import outbox
from ..models import (
    AskedMarker,
    ConsentAction,
    ConsentEvent,
    Contact,
    ImportBatch,
    ImportOutcome,
    ImportRow,
    ImportStatus,
    OutboxMessage,
    OutboxStatus,
    RequestStatus,
    SignupRequest,
    Subscription,
    SuppressionReason,
    Topic,
    utcnow,
)
from . import audit, consent
from .subscriptions import Client, address_of, lock_contact, record_event, scrub_ledger

CATEGORY = "repermission"


class CampaignError(ValueError):
    """The campaign cannot be sent as asked; the message says why."""


def send(batch_id: int, topic_slugs: list[str], *, actor: str, ip: str | None = None) -> int:
    """Queue the permission email for every new contact of the batch not asked yet.

    Idempotent: running it again sends nothing to those already asked. Returns how many
    emails were queued.
    """
    batch = db.session.get(ImportBatch, batch_id)
    if batch is None or batch.status is not ImportStatus.IMPORTED:
        raise CampaignError("no imported batch with that id")
    if batch.purged_at is not None:
        raise CampaignError("the batch's deadline has passed")
    topics = _topics(batch, topic_slugs)
    now = utcnow()
    if batch.mailed_at is None:
        batch.topic_ids = [t.id for t in topics]
        batch.mailed_at = now
        days = int(current_app.config["REPERMISSION_DEADLINE_DAYS"])
        batch.deadline_at = now + timedelta(days=days)
    contact_ids = db.session.scalars(
        select(ImportRow.contact_id).where(
            ImportRow.batch_id == batch.id,
            ImportRow.outcome == ImportOutcome.NEW,
            ImportRow.contact_id.is_not(None),
        )
    ).all()
    queued = 0
    for contact_id in contact_ids:
        queued += _ask(batch, contact_id)
    _tally(batch, "mailed", queued)
    audit.record(actor, "campaign.send", f"batch {batch.id}", ip=ip, queued=queued,
                 topics=[t.slug for t in topics])  # fmt: skip
    db.session.commit()
    return queued


def _topics(batch: ImportBatch, slugs: list[str]) -> list[Topic]:
    if batch.topic_ids:
        return list(db.session.scalars(select(Topic).where(Topic.id.in_(batch.topic_ids))))
    if not slugs:
        raise CampaignError("choose at least one topic to ask permission for")
    topics = list(db.session.scalars(select(Topic).where(Topic.slug.in_(slugs))))
    if len(topics) != len(set(slugs)):
        raise CampaignError("unknown topic")
    return topics


def _ask(batch: ImportBatch, contact_id: int) -> int:
    """One permission email for one contact, unless something changed since the import."""
    lock_contact(contact_id)
    contact = db.session.get(Contact, contact_id, populate_existing=True)
    if contact is None:
        return 0
    asked = db.session.scalar(
        select(SignupRequest.id).where(
            SignupRequest.contact_id == contact_id, SignupRequest.import_batch_id == batch.id
        )
    )
    if asked is not None:
        return 0
    if suppression.reason(contact.email) is not None:
        return 0
    if db.session.scalar(
        select(Subscription.id).where(Subscription.contact_id == contact_id).limit(1)
    ):
        return 0  # subscribed or unsubscribed since the import: leave them alone
    text = consent.current(contact.language)
    request = SignupRequest(
        contact=contact,
        topic_ids=list(batch.topic_ids),
        language=contact.language,
        first_name=contact.first_name,
        channel="import",
        import_batch_id=batch.id,
        consent_text_id=text.id,
        expires_at=batch.deadline_at,
        emailed_at=utcnow(),
    )
    db.session.add(request)
    db.session.flush()
    row = outbox.enqueue(
        "repermission",
        address_of(contact),
        contact.language,
        to_name=contact.first_name,
        context={"request": request.public_id},
        contact=contact,
        category=CATEGORY,
    )
    for topic_id in batch.topic_ids:
        db.session.add(
            ConsentEvent(
                contact_id=contact.id,
                topic_id=topic_id,
                action=ConsentAction.REPERMISSION_SENT,
                channel="import",
                language=contact.language,
                consent_text_id=text.id,
                consent_text_sha256=text.sha256,
                import_batch_id=batch.id,
                request_id=request.id,
                message_id=row.message_id,
            )
        )
    _mark_asked(contact.email)
    return 1


def _mark_asked(canonical: str) -> None:
    digest = suppression.digest(canonical)
    marker = db.session.scalar(select(AskedMarker).where(AskedMarker.digest == digest))
    if marker is None:
        db.session.add(AskedMarker(digest=digest))
    else:
        marker.asked_at = utcnow()


def remind(*, actor: str = "cli") -> int:
    """One reminder per batch, after REPERMISSION_REMINDER_DAYS, to the undecided only."""
    days = int(current_app.config["REPERMISSION_REMINDER_DAYS"])
    now = utcnow()
    batches = db.session.scalars(
        select(ImportBatch).where(
            ImportBatch.mailed_at.is_not(None),
            ImportBatch.reminded_at.is_(None),
            ImportBatch.purged_at.is_(None),
            ImportBatch.mailed_at < now - timedelta(days=days),
            ImportBatch.deadline_at > now,
        )
    ).all()
    queued = 0
    for batch in batches:
        requests = db.session.scalars(
            select(SignupRequest).where(
                SignupRequest.import_batch_id == batch.id,
                SignupRequest.status == RequestStatus.PENDING,
            )
        ).all()
        for request in requests:
            outbox.enqueue(
                "repermission-reminder",
                address_of(request.contact),
                request.language,
                to_name=request.first_name,
                context={"request": request.public_id},
                contact=request.contact,
                category=CATEGORY,
            )
            queued += 1
        batch.reminded_at = now
        audit.record(actor, "campaign.remind", f"batch {batch.id}", queued=len(requests))
    db.session.commit()
    return queued


def refuse(public_id: str, client: Client) -> None:
    """ "No, never contact me": suppress the address and erase the person (H3, Art. 21(3))."""
    request = db.session.scalar(select(SignupRequest).where(SignupRequest.public_id == public_id))
    if request is None:
        return
    lock_contact(request.contact_id)
    contact = db.session.get(Contact, request.contact_id, populate_existing=True)
    batch = (
        db.session.get(ImportBatch, request.import_batch_id) if request.import_batch_id else None
    )
    if contact is None:
        db.session.rollback()
        return
    suppression.add(contact.email, SuppressionReason.OBJECTED)
    record_event(ConsentAction.OBJECTED, contact, None, channel="import", client=client,
                 language=contact.language)  # fmt: skip
    if batch is not None:
        _tally(batch, "refused")
        _retire(batch, contact.id)
    else:
        scrub_ledger(contact.id)
        db.session.delete(contact)
    db.session.commit()


def _tally(batch: ImportBatch, key: str, amount: int = 1) -> None:
    # A new dict: SQLAlchemy does not see in-place changes to a JSON column.
    batch.tallies = {**batch.tallies, key: batch.tallies.get(key, 0) + amount}


def _retire(batch: ImportBatch, contact_id: int) -> None:
    """Delete an imported contact, keeping its delivery figures in the batch's tallies."""
    for status, key in ((OutboxStatus.SENT, "delivered"), (OutboxStatus.FAILED, "bounced")):
        _tally(batch, key, _outbox_count([contact_id], status))
    scrub_ledger(contact_id)
    db.session.execute(
        update(ImportRow).where(ImportRow.contact_id == contact_id).values(contact_id=None)
    )
    db.session.execute(delete(Contact).where(Contact.id == contact_id))


def record_confirmation(request: SignupRequest) -> None:
    """Called by the confirmation use case when a permission request is confirmed."""
    if request.import_batch_id is not None:
        batch = db.session.get(ImportBatch, request.import_batch_id)
        if batch is not None:
            _tally(batch, "confirmed")


def purge_expired(now: datetime) -> int:
    """Batches past their deadline lose every contact that did not confirm (H2).

    What stays: the batch's counts and tallies, the ledger rows without the person, and the
    keyed "asked on" markers. The per-row report loses its addresses.
    """
    never_mailed_cutoff = now - timedelta(
        days=int(current_app.config["REPERMISSION_DEADLINE_DAYS"])
    )
    batches = db.session.scalars(
        select(ImportBatch).where(
            ImportBatch.purged_at.is_(None),
            ImportBatch.status == ImportStatus.IMPORTED,
            # Asked and past the deadline, or never asked at all within the same time.
            (ImportBatch.deadline_at < now)
            | (ImportBatch.mailed_at.is_(None) & (ImportBatch.created_at < never_mailed_cutoff)),
        )
    ).all()
    purged = 0
    unconfirmed = ~select(Subscription.id).where(Subscription.contact_id == Contact.id).exists()
    for batch in batches:
        contact_ids = db.session.scalars(
            select(Contact.id).where(Contact.import_batch_id == batch.id, unconfirmed)
        ).all()
        for contact_id in contact_ids:
            lock_contact(contact_id)
            still = db.session.scalar(
                select(Contact.id).where(Contact.id == contact_id, unconfirmed)
            )
            if still is not None:
                _retire(batch, contact_id)
                _tally(batch, "purged")
                purged += 1
        db.session.execute(update(ImportRow).where(ImportRow.batch_id == batch.id).values(email=""))
        batch.purged_at = now
        db.session.commit()
    return purged


def funnel(batch_id: int) -> dict[str, int]:
    """imported, mailed, delivered, bounced, confirmed, refused, purged for one batch."""
    batch = db.session.get(ImportBatch, batch_id)
    if batch is None:
        raise CampaignError("no such batch")
    # A subquery, not a list: a batch of 90,000 contacts would pass SQLite's parameter limit.
    live = select(Contact.id).where(Contact.import_batch_id == batch_id)
    tallies = batch.tallies or {}
    return {
        "imported": (batch.counts or {}).get("new", 0),
        "mailed": tallies.get("mailed", 0),
        "delivered": tallies.get("delivered", 0) + _outbox_count(live, OutboxStatus.SENT),
        "bounced": tallies.get("bounced", 0) + _outbox_count(live, OutboxStatus.FAILED),
        "confirmed": tallies.get("confirmed", 0),
        "refused": tallies.get("refused", 0),
        "purged": tallies.get("purged", 0),
    }


def _outbox_count(contact_ids: Any, status: OutboxStatus) -> int:
    """Permission emails with ``status`` among ``contact_ids`` (a list or a subquery)."""
    if isinstance(contact_ids, list) and not contact_ids:
        return 0
    return (
        db.session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                OutboxMessage.template == "repermission",
                OutboxMessage.contact_id.in_(contact_ids),
                OutboxMessage.status == status,
            )
        )
        or 0
    )

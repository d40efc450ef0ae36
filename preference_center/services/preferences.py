"""The preference center's use cases: change, pause, leave, see, download, forget, move.

A person reaches these only through a link we emailed them (a "manage" token), so there is no
login. Every function is one transaction, locks the person's row first (see subscriptions.py)
and writes a consent-ledger entry for every change. The page's own choices, and saving them,
are in choices.py; leaving is in leaving.py.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, delete, select

from .. import addresses, suppression
from ..config import SUPPORTED_LOCALES
from ..extensions import db
from ..mail import outbox
from ..models import (
    ChangeKind,
    ConsentAction,
    ConsentEvent,
    ConsentText,
    Contact,
    ContactSource,
    EmailChangeRequest,
    LeaveReason,
    OutboxMessage,
    RequestStatus,
    SignupRequest,
    Subscription,
    SuppressionReason,
    Topic,
    utcnow,
)
from . import audit, changes
from .confirmation import RequestContact
from .leaving import Leaver
from .prepared import Prepared
from .subscriptions import Client, address_of, lock_contact, record_event, scrub_ledger

LEAVE_REASONS = ("too-many", "not-relevant", "never-signed-up", "other")
#: The longest pause a person can choose; "for good" is what unsubscribing is for.
MAX_PAUSE = timedelta(days=366)


class LinkRevoked(LookupError):
    """The manage link's contact is gone, or the link was revoked by a newer version."""


class InvalidChoice(ValueError):
    """A choice the page never offered (an unknown topic, frequency or date)."""


class AddressTaken(Exception):
    """The new address already belongs to another subscriber."""


# --- finding the person behind a link -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkedContact:
    """The person a manage link is for, as the pages behind it need them: read with Core,
    the only columns they use (every email links here, so it is read very often)."""

    id: int
    public_id: str
    manage_version: int
    email_display: str
    first_name: str | None
    language: str
    paused_until: datetime | None
    prefs_version: int
    source: ContactSource
    created_at: datetime


#: Built once, like the other statements of the busiest pages: composing one costs more
#: than running it.
_LINKED_CONTACT = select(*(Contact.__table__.c[name] for name in LinkedContact.__slots__)).where(
    Contact.__table__.c.public_id == bindparam("public_id")
)


#: On SQLite without SQLAlchemy's per-execution work (prepared.py): every preference page.
_PREPARED_LINKED_CONTACT = Prepared(_LINKED_CONTACT)


def contact_for_link(payload: dict[str, Any]) -> LinkedContact:
    """The contact a manage link is for, if the link is still valid."""
    rows = _PREPARED_LINKED_CONTACT.execute(
        db.session.connection(), {"public_id": payload.get("c")}
    )
    contact = LinkedContact(*rows[0]) if rows else None
    if contact is None or contact.manage_version != payload.get("v"):
        raise LinkRevoked()
    return contact


def manage_payload(contact: Contact | LinkedContact | Leaver | RequestContact) -> dict[str, Any]:
    """What a manage link carries: the contact's public id and its links' version."""
    return {"c": contact.public_id, "v": contact.manage_version}


# --- links by email -------------------------------------------------------------------------


def _recently_sent(contact_id: int, template: str) -> bool:
    window = timedelta(seconds=int(current_app.config["MANAGE_LINK_INTERVAL"]))
    found = db.session.scalar(
        select(OutboxMessage.id)
        .where(
            OutboxMessage.contact_id == contact_id,
            OutboxMessage.template == template,
            OutboxMessage.created_at > utcnow() - window,
        )
        .limit(1)
    )
    return found is not None


def send_manage_link(raw_email: str) -> bool:
    """Email the preference link to ``raw_email`` if it has subscriptions; True if queued.

    The caller shows the same page whatever this returns: nobody learns who is subscribed.
    """
    try:
        address = addresses.parse(raw_email)
    except addresses.InvalidAddress:
        return False
    contact = db.session.scalar(select(Contact).where(Contact.email == address.canonical))
    if contact is None or not contact.subscriptions:
        db.session.rollback()
        return False
    return _queue_link(contact, "manage-link")


def resend_manage_link(subscriber_id: str) -> bool:
    """A fresh link for an expired or revoked one, to the address we have on file."""
    contact = db.session.scalar(select(Contact).where(Contact.public_id == subscriber_id))
    if contact is None:
        db.session.rollback()
        return False
    return _queue_link(contact, "manage-link")


def request_export(contact_id: int) -> bool:
    """Email a link to download everything we hold (K1: never shown on screen directly)."""
    contact = db.session.get(Contact, contact_id)
    if contact is None:
        db.session.rollback()
        return False
    return _queue_link(contact, "export-link")


def _queue_link(contact: Contact, template: str) -> bool:
    lock_contact(contact.id)
    if _recently_sent(contact.id, template):
        db.session.commit()
        return False
    outbox.enqueue(
        template,
        address_of(contact),
        contact.language,
        to_name=contact.first_name,
        context={"contact": contact.public_id},
        contact=contact,
    )
    db.session.commit()
    return True


# --- leaving --------------------------------------------------------------------------------


def record_leave_reason(reason: str, comment: str | None, language: str) -> None:
    """Keep why someone left, without any link to them."""
    if reason not in LEAVE_REASONS:
        raise InvalidChoice("reason")
    comment = (comment or "").strip()[:500] or None
    db.session.add(
        LeaveReason(
            reason=reason,
            comment=comment,
            language=language if language in SUPPORTED_LOCALES else "en",
            day=utcnow().date(),
        )
    )
    db.session.commit()


# --- changing the address -------------------------------------------------------------------


def request_email_change(contact_id: int, raw_new: str) -> EmailChangeRequest | None:
    """Ask the new address to confirm; tell the old one. Nothing moves yet (D10)."""
    new = addresses.parse(raw_new)
    lock_contact(contact_id)
    contact = db.session.get(Contact, contact_id, populate_existing=True)
    if contact is None:
        db.session.rollback()
        raise LinkRevoked()
    if new.canonical == contact.email:
        db.session.commit()
        return None
    request = EmailChangeRequest(
        contact=contact,
        new_email=new.canonical,
        new_email_display=new.display,
        expires_at=utcnow() + timedelta(seconds=int(current_app.config["CONFIRM_TOKEN_MAX_AGE"])),
    )
    db.session.add(request)
    db.session.flush()
    outbox.enqueue(
        "email-change",
        new,
        contact.language,
        to_name=contact.first_name,
        context={"request": request.public_id},
    )
    outbox.enqueue(
        "email-change-notice",
        address_of(contact),
        contact.language,
        to_name=contact.first_name,
        context={"new_address": addresses.mask(new.display), "contact": contact.public_id},
        contact=contact,
    )
    db.session.commit()
    return request


def confirm_email_change(public_id: str, client: Client) -> Contact:
    """Move the subscriber to the confirmed new address; old manage links stop working."""
    request = db.session.scalar(
        select(EmailChangeRequest).where(EmailChangeRequest.public_id == public_id)
    )
    if request is None:
        raise LinkRevoked()
    lock_contact(request.contact_id)
    request = db.session.get(EmailChangeRequest, request.id, populate_existing=True)
    contact = db.session.get(Contact, request.contact_id, populate_existing=True)
    if request.status is not RequestStatus.PENDING:
        db.session.commit()
        return contact
    if request.expires_at <= utcnow():
        db.session.commit()
        raise LinkRevoked()
    taken = db.session.scalar(select(Contact.id).where(Contact.email == request.new_email))
    if taken is not None:
        request.status = RequestStatus.CANCELLED
        db.session.commit()
        raise AddressTaken()
    new = addresses.parse(request.new_email_display)
    contact.email, contact.email_display, contact.address_kind = (
        new.canonical,
        new.display,
        new.kind,
    )
    contact.manage_version += 1
    contact.prefs_version += 1
    request.status = RequestStatus.CONFIRMED
    record_event(
        ConsentAction.UPDATED,
        contact,
        None,
        channel="email-change",
        client=client,
        language=contact.language,
    )
    # The list keeps the member (same subscriber id) and takes the new address from the feed.
    changes.record(ChangeKind.UPDATED, contact)
    db.session.commit()
    return contact


# --- what we hold, download, forget ---------------------------------------------------------


def export_data(contact_id: int) -> dict[str, Any]:
    """Everything we hold about a person, for "download my data" (Art. 15 and 20; K2)."""
    contact = db.session.get(Contact, contact_id)
    if contact is None:
        raise LinkRevoked()
    texts = {t.id: t for t in db.session.scalars(select(ConsentText))}
    topics = {t.id: t for t in db.session.scalars(select(Topic))}
    events = db.session.scalars(
        select(ConsentEvent)
        .where(ConsentEvent.contact_id == contact_id)
        .order_by(ConsentEvent.occurred_at, ConsentEvent.id)
    ).all()
    return {
        "profile": {
            "email": contact.email_display,
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "company": contact.company,
            "language": contact.language,
            "source": contact.source.value,
            "address_kind": contact.address_kind.value,
            "paused_until": _iso(contact.paused_until),
            "created_at": _iso(contact.created_at),
            "updated_at": _iso(contact.updated_at),
        },
        "subscriptions": [
            {
                "topic": s.topic.slug,
                "topic_name": s.topic.name(contact.language),
                "status": s.status.value,
                "frequency": s.frequency,
                "confirmed_at": _iso(s.confirmed_at),
                "unsubscribed_at": _iso(s.unsubscribed_at),
            }
            for s in contact.subscriptions
        ],
        "consent_history": [
            {
                "at": _iso(e.occurred_at),
                "action": e.action.value,
                "topic": topics[e.topic_id].slug if e.topic_id in topics else None,
                "channel": e.channel,
                "ip": e.ip,
                "user_agent": e.user_agent,
                "language": e.language,
                "consent_text_version": texts[e.consent_text_id].version
                if e.consent_text_id in texts
                else None,
                "consent_text_sha256": e.consent_text_sha256,
                "consent_text": texts[e.consent_text_id].body
                if e.consent_text_id in texts
                else None,
            }
            for e in events
        ],
    }


def log_export(contact_id: int, fmt: str, ip: str | None) -> None:
    """Every download of personal data is in the audit log."""
    contact = db.session.get(Contact, contact_id)
    if contact is not None:
        audit.record("subscriber", "subscriber.export", contact.public_id, ip=ip, format=fmt)
        db.session.commit()


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


#: A cell starting with one of these is a formula to Excel and LibreOffice (ASVS 1.2.10, L5).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\0")


def neutralise(value: Any) -> str:
    """A CSV cell that no spreadsheet will evaluate: a leading formula character gets a quote."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def export_csv(data: dict[str, Any]) -> str:
    """The export as one CSV table (section, item, field, value), formula-neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["section", "item", "field", "value"])
    for field, value in data["profile"].items():
        writer.writerow(["profile", "", field, neutralise(value)])
    for section in ("subscriptions", "consent_history"):
        for index, row in enumerate(data[section], start=1):
            for field, value in row.items():
                writer.writerow([section, index, field, neutralise(value)])
    return buffer.getvalue()


def erase(contact_id: int, client: Client) -> None:
    """Forget a person (Art. 17; K3): delete every personal trace, keep a keyed HMAC.

    What stays: the suppression entry (so no import ever brings the address back), the
    ledger entries without anything that points to the person, and a tombstone in the change
    feed so the mailing list deletes the member too (scrubbed after SYNC_TOMBSTONE_DAYS).
    """
    lock_contact(contact_id)
    contact = db.session.get(Contact, contact_id, populate_existing=True)
    if contact is None:
        db.session.rollback()
        return
    suppression.add(contact.email, SuppressionReason.ERASED)
    changes.record_erasure(contact)
    audit.record("subscriber", "subscriber.erase", contact.public_id, ip=client.ip)
    db.session.add(
        ConsentEvent(
            contact_id=None,
            action=ConsentAction.ERASED,
            channel="preference-page",
            language=contact.language,
        )
    )
    scrub_ledger(contact.id)
    for model in (OutboxMessage, EmailChangeRequest, SignupRequest, Subscription):
        db.session.execute(
            delete(model)
            .where(model.contact_id == contact.id)
            .execution_options(synchronize_session=False)
        )
    db.session.execute(delete(Contact).where(Contact.id == contact.id))
    db.session.commit()

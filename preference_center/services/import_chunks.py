"""One chunk of an import: each row's outcome, checked against the database, then written.

A chunk of rows costs one lookup per check (existing contacts, suppression list, asked
markers) and one bulk insert per table (:mod:`.bulk`), whatever its size. The checks run when
the chunk is written, inside the import's transaction, so an unsubscribe or a suppression
made while a file is being imported is honoured for every later chunk (F4).

Memory stays flat however long the file (G7): a row is a duplicate when its canonical address
appeared earlier in the file, and instead of a set of every address so far (about 100 MB at a
million rows), an address that became a new contact of this batch is recognised in the
database by ``Contact.import_batch_id``, which the existing-contacts lookup reads anyway. Only
the addresses that did *not* become this batch's contacts (suppressed, known, asked recently,
or taken by a signup racing the import) are kept in memory.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from .. import addresses, readers, suppression
from ..extensions import db
from ..models import (
    AddressKind,
    AskedMarker,
    Contact,
    ContactSource,
    ImportOutcome,
    ImportRow,
    Subscription,
    SubscriptionStatus,
    Suppression,
    utcnow,
)
from .bulk import BulkInsert, among

ASK_AGAIN_AFTER = timedelta(days=365)
LANGUAGES = {"nl": "nl", "fr": "fr", "en": "en", "nederlands": "nl", "français": "fr",
             "francais": "fr", "english": "en", "dutch": "nl", "french": "fr"}  # fmt: skip

_PERSONAL = AddressKind.PERSONAL.value
_NEW, _DUPLICATE = ImportOutcome.NEW, ImportOutcome.DUPLICATE

# Values that vary per row; the batch id, source and clock are set once per chunk.
_CONTACTS = BulkInsert(
    Contact.__table__,
    ("email", "email_display", "first_name", "last_name", "company", "language", "address_kind"),
    ("import_batch_id", "source", "created_at", "updated_at"),
    conflict=("email",),
)
_REPORT = BulkInsert(
    ImportRow.__table__,
    ("line", "email", "outcome", "reason", "address_kind", "contact_id"),
    ("batch_id",),
)


@dataclass
class ImportRun:
    """What one import carries from chunk to chunk."""

    batch_id: int
    language: str
    counts: Counter[str] = field(default_factory=Counter)
    #: Canonical addresses of earlier chunks that are not contacts of this batch.
    seen: set[str] = field(default_factory=set)


def write_chunk(run: ImportRun, chunk: list[readers.Row]) -> None:
    """Decide every row's outcome, insert the new contacts and the report rows."""
    parsed: list[tuple[readers.Row, addresses.Address | None, str | None]] = []
    for row in chunk:
        if row.error:
            parsed.append((row, None, row.error))
            continue
        try:
            parsed.append((row, addresses.parse(row.email), None))
        except addresses.InvalidAddress as exc:
            parsed.append((row, None, exc.reason))
    canonical = {address.canonical for _, address, _ in parsed if address is not None}
    known, ours = _known_contacts(canonical, run.batch_id)
    by_digest = suppression.digests(canonical)  # one HMAC per address and key, for both checks
    blocked = _suppressed(by_digest)
    asked = _asked_recently(by_digest)

    counts = run.counts
    in_chunk: set[str] = set()
    outcomes: list[tuple[ImportOutcome, str | None]] = []
    new_contacts: list[tuple[Any, ...]] = []
    for row, address, error in parsed:
        if address is None:
            outcome, reason = ImportOutcome.INVALID, error
        else:
            key = address.canonical
            if key in in_chunk or key in run.seen or key in ours:
                outcome, reason = _DUPLICATE, None
            else:
                outcome, reason = _outcome(key, known, blocked, asked), None
                in_chunk.add(key)
                if outcome is not _NEW:
                    run.seen.add(key)
            if address.kind.value != _PERSONAL:
                counts[address.kind.value] += 1
            if outcome is _NEW:
                new_contacts.append(_contact_values(run, row, address))
        counts[outcome.value] += 1
        outcomes.append((outcome, reason))

    ids = _insert_contacts(run, new_contacts)
    report = []
    for (row, address, _), (outcome, reason) in zip(parsed, outcomes, strict=True):
        contact_id = ids.get(address.canonical) if outcome is _NEW and address else None
        report.append((row.line, (row.email or "")[:320], outcome, reason,
                       address.kind if address else None, contact_id))  # fmt: skip
    _REPORT.execute(report, {"batch_id": run.batch_id})


def _outcome(key: str, known: dict[str, str], blocked: set[str], asked: set[str]) -> ImportOutcome:
    """The outcome of an address seen for the first time in the file."""
    if key in blocked:
        return ImportOutcome.SUPPRESSED
    status = known.get(key)
    if status == "subscribed":
        return ImportOutcome.ALREADY_SUBSCRIBED
    if status == "unsubscribed":
        return ImportOutcome.UNSUBSCRIBED
    if key in asked:
        return ImportOutcome.ASKED_RECENTLY
    return _NEW


def _known_contacts(canonical: set[str], batch_id: int) -> tuple[dict[str, str], set[str]]:
    """Existing contacts among ``canonical``: 'subscribed', 'unsubscribed' or 'pending';
    and the addresses that are contacts made by this very batch (earlier chunks)."""
    if not canonical:
        return {}, set()
    rows = db.session.execute(
        select(Contact.email, Contact.import_batch_id, Subscription.status)
        .outerjoin(Subscription, Subscription.contact_id == Contact.id)
        .where(among(Contact.email, canonical))
    ).all()
    state: dict[str, str] = {}
    ours: set[str] = set()
    for email, import_batch_id, status in rows:
        if import_batch_id == batch_id:
            ours.add(email)
        if status is SubscriptionStatus.SUBSCRIBED:
            state[email] = "subscribed"
        elif status is SubscriptionStatus.UNSUBSCRIBED:
            state.setdefault(email, "unsubscribed")
        else:
            state.setdefault(email, "pending")
    return state, ours


def _suppressed(by_digest: dict[str, str]) -> set[str]:
    """Addresses on the suppression list, under any key (a rotation lets nobody back in)."""
    if not by_digest:
        return set()
    found = db.session.scalars(
        select(Suppression.digest).where(among(Suppression.digest, by_digest))
    )
    return {by_digest[d] for d in found}


def _asked_recently(by_digest: dict[str, str]) -> set[str]:
    """Addresses asked for permission within the last year (G14)."""
    if not by_digest:
        return set()
    found = db.session.scalars(
        select(AskedMarker.digest).where(
            among(AskedMarker.digest, by_digest), AskedMarker.asked_at > utcnow() - ASK_AGAIN_AFTER
        )
    )
    return {by_digest[d] for d in found}


def _contact_values(
    run: ImportRun, row: readers.Row, address: addresses.Address
) -> tuple[Any, ...]:
    language = LANGUAGES.get((row.language or "").strip().lower(), run.language)
    return (
        address.canonical,
        address.display,
        (row.first_name or "").strip()[:100] or None,
        (row.last_name or "").strip()[:100] or None,
        (row.company or "").strip()[:200] or None,
        language,
        address.kind,
    )


def _public_ids(count: int) -> list[str]:
    """Random UUIDs as ``Contact.public_id``'s default makes them (``uuid.uuid4()``), with the
    chunk's randomness read in one system call instead of one per contact."""
    random = os.urandom(16 * count)
    return [str(uuid.UUID(bytes=random[i : i + 16], version=4)) for i in range(0, 16 * count, 16)]


def _insert_contacts(run: ImportRun, values: list[tuple[Any, ...]]) -> dict[str, int]:
    """Insert new contacts; one created meanwhile (a signup racing the import) is kept as is.

    Returns the id of every address's contact, this batch's or the one that was there.
    """
    if not values:
        return {}
    # One clock reading per chunk: its rows are written by one statement. The counters come
    # from the column defaults.
    now = utcnow()
    _CONTACTS.execute(values, {"import_batch_id": run.batch_id, "source": ContactSource.IMPORT,
                               "created_at": now, "updated_at": now},
                      {"public_id": _public_ids(len(values))})  # fmt: skip
    emails = [v[0] for v in values]
    rows = db.session.execute(
        select(Contact.email, Contact.id, Contact.import_batch_id).where(
            among(Contact.email, emails)
        )
    ).all()
    for email, _, import_batch_id in rows:
        if import_batch_id != run.batch_id:
            run.seen.add(email)  # not ours: a later repeat must still be a duplicate
    return {email: contact_id for email, contact_id, _ in rows}

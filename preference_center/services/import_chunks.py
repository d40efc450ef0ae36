"""One chunk of an import: each row checked, its outcome decided against the database, written.

:func:`check_rows` needs no database and no application: it validates the addresses and
tidies the values of a chunk of file rows. :func:`write_chunk` then costs one lookup per check
(existing contacts, suppression list, asked markers) and one bulk insert per table
(:mod:`.bulk`), whatever the chunk's size. The checks run when the chunk is written, inside
the import's transaction, so an unsubscribe or a suppression made while a file is being
imported is honoured for every later chunk (F4).

Memory stays flat however long the file (G7): a row is a duplicate when its canonical address
appeared earlier in the file, and instead of a set of every address so far (about 100 MB at a
million rows), an address that became a new contact of this batch is recognised in the
database by ``Contact.import_batch_id``, which the existing-contacts lookup reads anyway. Only
the addresses that did *not* become this batch's contacts (suppressed, known, asked recently,
or taken by a signup racing the import) are kept in memory.

On PostgreSQL the writes of a chunk overlap the reading and checking of the next ones
(:class:`OverlappedWrites`): the server inserts while the process checks. Its lookups then
run before the previous chunk's contacts are inserted, so that chunk's new addresses are
held too, one chunk at a time.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.engine import Connection

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
from .bulk import BulkInsert, among, connection, dialect_name, listed

ASK_AGAIN_AFTER = timedelta(days=365)
LANGUAGES = {"nl": "nl", "fr": "fr", "en": "en", "nederlands": "nl", "français": "fr",
             "francais": "fr", "english": "en", "dutch": "nl", "french": "fr"}  # fmt: skip

_NEW, _DUPLICATE, _INVALID = ImportOutcome.NEW, ImportOutcome.DUPLICATE, ImportOutcome.INVALID
_KIND_VALUES = {kind: kind.value for kind in AddressKind}

_CONTACTS = BulkInsert(
    Contact.__table__,
    ("email", "email_display", "first_name", "last_name", "company", "language", "address_kind",
     "public_id"),
    conflict=("email",),
    returning=("email", "id"),
)  # fmt: skip
_REPORT = BulkInsert(
    ImportRow.__table__, ("line", "email", "outcome", "reason", "address_kind", "contact_id")
)


class Checked(NamedTuple):
    """One row of the file, its address validated and its values ready to store.

    A plain tuple, cheap to make and to keep for a chunk, made from the file alone.
    """

    line: int
    email: str  # as in the file, for the report
    first_name: str | None
    last_name: str | None
    company: str | None
    language: str | None  # nl, fr or en; None when the file says nothing usable
    canonical: str | None  # None: the row is invalid, ``reason`` says why
    display: str | None
    kind: str | None  # an AddressKind value
    reason: str | None


def check_rows(rows: Iterable[readers.Row]) -> list[Checked]:
    """Validate and tidy file rows; no database, no application context needed."""
    checked = []
    for row in rows:
        canonical = display = kind = reason = None
        if row.error:
            reason = row.error
        else:
            try:
                address = addresses.parse(row.email)
            except addresses.InvalidAddress as exc:
                reason = exc.reason
            else:
                canonical, display, kind = (
                    address.canonical,
                    address.display,
                    _KIND_VALUES[address.kind],
                )
        checked.append(Checked(
            row.line, (row.email or "")[:320],
            (row.first_name or "").strip()[:100] or None,
            (row.last_name or "").strip()[:100] or None,
            (row.company or "").strip()[:200] or None,
            LANGUAGES.get((row.language or "").strip().lower()),
            canonical, display, kind, reason,
        ))  # fmt: skip
    return checked


@dataclass
class ImportRun:
    """What one import carries from chunk to chunk."""

    batch_id: int
    language: str
    counts: Counter[str] = field(default_factory=Counter)
    #: Canonical addresses of earlier chunks that are not contacts of this batch.
    seen: set[str] = field(default_factory=set)
    #: Writes each chunk while the next one is read (PostgreSQL, see :class:`OverlappedWrites`);
    #: None: each chunk is written before :func:`write_chunk` returns.
    overlap: OverlappedWrites | None = None


class Found(NamedTuple):
    """What the lookups of a chunk found in the database."""

    known: dict[str, str]  # address -> 'subscribed', 'unsubscribed' or 'pending'
    ours: set[str]  # addresses that are contacts of this batch already
    blocked: set[str]  # suppressed
    asked: set[str]  # asked within ASK_AGAIN_AFTER


class Decided(NamedTuple):
    """A chunk with every row's outcome, its rows ready to be written.

    Made on the main thread, so that the helper of :class:`OverlappedWrites` has little
    Python to run (it shares the GIL with the main thread): only the ids of the new contacts
    are left to fill in.
    """

    contacts: list[tuple[Any, ...]]  # the new contacts' values, in _CONTACTS' column order
    #: (line, email, outcome, reason, kind, the address of a new contact or None)
    report: list[tuple[Any, ...]]


def write_chunk(run: ImportRun, chunk: list[Checked]) -> None:
    """Decide every row's outcome, insert the new contacts and the report rows."""
    if run.overlap is not None:
        run.overlap.add(chunk)
        return
    dialect = dialect_name()
    found = _look_up(run, _canonical(chunk), dialect)
    decided = _decide(run, chunk, found, frozenset())
    run.seen.update(_write(run, decided, connection()))


def _canonical(chunk: list[Checked]) -> set[str]:
    return {row.canonical for row in chunk if row.canonical is not None}


def _look_up(
    run: ImportRun, canonical: set[str], dialect: str, by_digest: dict[str, str] | None = None
) -> Found:
    """The chunk's three lookups, on the session's connection."""
    known, ours = _known_contacts(canonical, run.batch_id, dialect)
    if by_digest is None:  # one HMAC per address and key, for both checks
        by_digest = suppression.digests(canonical)
    blocked = _found(_suppressed_query(dialect), by_digest, dialect)
    asked = _found(_asked_query(dialect), by_digest, dialect, since=utcnow() - ASK_AGAIN_AFTER)
    return Found(known, ours, blocked, asked)


def _decide(
    run: ImportRun, chunk: list[Checked], found: Found, pending: AbstractSet[str]
) -> Decided:
    """Every row's outcome, counted in ``run``; no database.

    ``pending`` holds the new contacts of a chunk that is still being written, which the
    lookups could not see yet: a repeat of one of them is a duplicate, as it would be once
    written (``found.ours``), whether the contact is inserted or was taken meanwhile.
    """
    known, ours, blocked, asked = found
    seen, in_chunk = run.seen, set()
    outcomes: list[ImportOutcome] = []
    new_rows: list[Checked] = []
    for row in chunk:
        key = row.canonical
        if key is None:
            outcome = _INVALID
        elif key in in_chunk or key in seen or key in ours or key in pending:
            outcome = _DUPLICATE
        else:
            in_chunk.add(key)
            outcome = _outcome(key, known, blocked, asked)
            if outcome is _NEW:
                new_rows.append(row)
            else:
                seen.add(key)
        outcomes.append(outcome)
    # Counted in C per member, then named: Enum.value is a descriptor call per row.
    for outcome, count in Counter(outcomes).items():
        run.counts[outcome.value] += count
    kinds = Counter(row.kind for row in chunk)
    for kind in kinds.keys() - {None, AddressKind.PERSONAL.value}:
        run.counts[kind] += kinds[kind]
    public_ids = _public_ids(len(new_rows))
    contacts = [(row.canonical, row.display, row.first_name, row.last_name, row.company,
                 row.language or run.language, row.kind, public_id)
                for row, public_id in zip(new_rows, public_ids, strict=True)]  # fmt: skip
    report = [(row.line, row.email, outcome, row.reason, row.kind,
               row.canonical if outcome is _NEW else None)
              for row, outcome in zip(chunk, outcomes, strict=True)]  # fmt: skip
    return Decided(contacts, report)


def _write(run: ImportRun, decided: Decided, bound: Connection) -> set[str]:
    """Insert a decided chunk's new contacts and report rows through ``bound``.

    Returns the addresses taken meanwhile by another contact (a signup racing the import),
    for ``run.seen``. Reads nothing of ``run`` that changes while the import goes on, so it
    can run on another thread while the next chunk is decided.
    """
    ids, taken = _insert_contacts(run, decided.contacts, bound)
    _REPORT.execute(
        [(line, email, outcome, reason, kind, ids.get(address))
         for line, email, outcome, reason, kind, address in decided.report],
        {"batch_id": run.batch_id},
        bound,
    )  # fmt: skip
    return taken


class OverlappedWrites:
    """PostgreSQL: a chunk's inserts run on a helper thread while the main thread goes on.

    Written one after the other, the import waits for the server for most of its time (the
    inserts, their index entries and foreign-key checks) while the process itself is idle,
    and then the server waits while the process reads and checks the next chunk. Here the
    inserts of chunk *n* run while chunk *n + 1* is decided and chunk *n + 2* is read and
    checked; psycopg releases the GIL while it waits for the server, so both CPUs work.

    One connection, used by one thread at a time: the main thread runs a chunk's lookups
    only after the previous write has finished, then hands the chunk before it to the
    helper, and touches the database no more until it waits for that write again. The
    lookups of chunk *n + 1* therefore run before the contacts of chunk *n* are inserted;
    those addresses are passed to the decision as ``pending`` (duplicates, as they would be
    once inserted). Addresses that a racing signup took (``seen``) come back from the helper
    and are added before the next chunk is decided, as when writing in order. Everything is
    still one transaction: a failed write is raised in the main thread at the next wait,
    and :meth:`close` waits for the helper before the caller rolls back.
    """

    def __init__(self, run: ImportRun, bound: Connection) -> None:
        self.run = run
        self.bound = bound
        self.dialect = bound.dialect.name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-write")
        self._writing: Future[set[str]] | None = None
        self._decided: Decided | None = None  # decided, not written yet

    def add(self, chunk: list[Checked]) -> None:
        canonical = _canonical(chunk)
        by_digest = suppression.digests(canonical)  # CPU work while the helper still writes
        self._wait()
        found = _look_up(self.run, canonical, self.dialect, by_digest)
        pending: AbstractSet[str] = frozenset()
        if self._decided is not None:
            previous = self._decided
            pending = {values[0] for values in previous.contacts}
            self._writing = self._executor.submit(_write, self.run, previous, self.bound)
            self._decided = (
                None  # handed to the writer: never written twice, even if _decide raises
            )
        self._decided = _decide(self.run, chunk, found, pending)

    def finish(self) -> None:
        """Write what is left; the import's transaction then holds every row."""
        self._wait()
        if self._decided is not None:
            decided, self._decided = self._decided, None
            self.run.seen.update(_write(self.run, decided, self.bound))

    def close(self) -> None:
        """Wait for the helper, whatever happened (the caller may roll back next)."""
        writing, self._writing = self._writing, None
        if writing is not None:
            with suppress(BaseException):
                writing.result()
        self._executor.shutdown(wait=True)

    def _wait(self) -> None:
        writing, self._writing = self._writing, None
        if writing is not None:
            self.run.seen.update(writing.result())


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


# The lookups are built once per database dialect and run again for every chunk with a new
# list of values: no statement to build, no new SQL text for the database to parse.


@cache
def _known_query(dialect: str) -> Select[Any]:
    return (
        select(Contact.email, Contact.import_batch_id, Subscription.status)
        .outerjoin(Subscription, Subscription.contact_id == Contact.id)
        .where(among(Contact.email, "addresses", dialect))
    )


@cache
def _suppressed_query(dialect: str) -> Select[Any]:
    return select(Suppression.digest).where(among(Suppression.digest, "digests", dialect))


@cache
def _asked_query(dialect: str) -> Select[Any]:
    return select(AskedMarker.digest).where(
        among(AskedMarker.digest, "digests", dialect), AskedMarker.asked_at > bindparam("since")
    )


@cache
def _contacts_by_email_query(dialect: str) -> Select[Any]:
    return select(Contact.email, Contact.id).where(among(Contact.email, "addresses", dialect))


def _known_contacts(
    canonical: set[str], batch_id: int, dialect: str
) -> tuple[dict[str, str], set[str]]:
    """Existing contacts among ``canonical``: 'subscribed', 'unsubscribed' or 'pending';
    and the addresses that are contacts made by this very batch (earlier chunks)."""
    if not canonical:
        return {}, set()
    rows = db.session.execute(
        _known_query(dialect), {"addresses": listed(canonical, dialect)}
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


def _found(query: Select[Any], by_digest: dict[str, str], dialect: str, **params: Any) -> set[str]:
    """The addresses whose digest, under any key, the lookup finds (a key rotation lets
    nobody back in: G13)."""
    if not by_digest:
        return set()
    found = db.session.scalars(query, {"digests": listed(by_digest, dialect), **params})
    return {by_digest[digest] for digest in found}


def _public_ids(count: int) -> list[str]:
    """Random UUIDs as ``Contact.public_id``'s default makes them (``uuid.uuid4()``), the
    chunk's randomness read in one system call instead of one per contact.

    Version 4 puts 4 in the 13th hex digit and the RFC 4122 variant 8, 9, a or b in the 17th.
    """
    digits = os.urandom(16 * count).hex()
    ids = []
    for start in range(0, 32 * count, 32):
        h = digits[start : start + 32]
        variant = "89ab"[int(h[16], 16) & 3]
        ids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}")
    return ids


def _insert_contacts(
    run: ImportRun, values: list[tuple[Any, ...]], bound: Connection
) -> tuple[dict[str, int], set[str]]:
    """Insert the new contacts (``values`` as :class:`Decided` holds them, the address
    first); one created meanwhile (a signup racing the import) is kept as is. Returns the id
    of every address's contact, this batch's or the one that was there, and the addresses
    that were taken that way (not this batch's contacts: a later repeat is still a
    duplicate)."""
    if not values:
        return {}, set()
    dialect = bound.dialect.name
    before = None
    if dialect != "postgresql":
        before = bound.scalar(select(func.max(Contact.id)))
    # One clock reading per chunk: its rows are written by one statement. The counters come
    # from the column defaults.
    now = utcnow()
    inserted = _CONTACTS.execute(values, {"import_batch_id": run.batch_id, "created_at": now,
                                          "updated_at": now, "source": ContactSource.IMPORT},
                                 bound)  # fmt: skip
    if inserted is None:
        # SQLite: this transaction holds the database's only write lock since the batch was
        # created, so the contacts above the previous highest id are the ones just inserted.
        inserted = bound.execute(
            select(Contact.email, Contact.id).where(
                Contact.id > (before or 0), Contact.import_batch_id == run.batch_id
            )
        ).all()
    ids = {email: contact_id for email, contact_id in inserted}
    missing = [address for address, *_ in values if address not in ids]
    taken: set[str] = set()
    if missing:  # the address was taken by another contact: report that one's id
        for email, contact_id in bound.execute(
            _contacts_by_email_query(dialect), {"addresses": listed(missing, dialect)}
        ):
            ids[email] = contact_id
            taken.add(email)
    return ids, taken

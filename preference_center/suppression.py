"""The suppression list: keyed HMACs of addresses we must not mail (or not yet).

Only the HMAC of the canonical address is kept, so the list proves "this address said no"
without holding the address. The key is ``SUPPRESSION_KEY``; older keys go in
``SUPPRESSION_KEY_FALLBACKS`` while they are rotated out: an entry found under an old key is
re-keyed on the spot, because at that moment we hold the address.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime

from flask import current_app
from sqlalchemy import String, any_, bindparam, delete, or_, select, update
from sqlalchemy.dialects import postgresql

from .extensions import db
from .models import Suppression, SuppressionReason, UTCDateTime, utcnow
from .services.prepared import Prepared

_TABLE = Suppression.__table__


def keys() -> list[bytes]:
    """The current key first, then the fallbacks."""
    return _keys()


def _keys() -> list[bytes]:
    config = current_app.config
    current = config.get("SUPPRESSION_KEY") or _derived_key(config["SECRET_KEY"])
    return [_bytes(current)] + [_bytes(k) for k in config.get("SUPPRESSION_KEY_FALLBACKS", [])]


def _derived_key(secret: str | bytes) -> bytes:
    # Fallback only: set SUPPRESSION_KEY in production, or rotating SECRET_KEY would
    # silently empty the list (the README says so).
    return hmac.new(_bytes(secret), b"preference-center suppression key", hashlib.sha256).digest()


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def digest(canonical: str, key: bytes | None = None) -> str:
    """The keyed HMAC-SHA256 of a canonical address, hex."""
    return hmac.digest(key or _keys()[0], canonical.encode("utf-8"), "sha256").hex()


def digests(canonicals: Iterable[str]) -> dict[str, str]:
    """Digest -> address for many addresses, under every key, current and fallback.

    For bulk checks (an import's chunk): the keys are derived once, not once per address,
    and a suppression made under a key being rotated out still matches. Each HMAC starts
    from a copy of one keyed for the whole call, which skips hashing the padded key again.
    """
    keyed = [hmac.new(key, digestmod=hashlib.sha256) for key in _keys()]
    found: dict[str, str] = {}
    for canonical in canonicals:
        encoded = canonical.encode("utf-8")
        for start in keyed:
            mac = start.copy()
            mac.update(encoded)
            found[mac.hexdigest()] = canonical
    return found


def _digests(canonical: str) -> list[str]:
    """The digests ``canonical`` may be stored under: the current key's first."""
    return [digest(canonical, key) for key in _keys()]


def find(canonical: str) -> Suppression | None:
    """The active entry for ``canonical``, if any (re-keyed if found under an old key)."""
    digests = _digests(canonical)
    now = utcnow()
    entry = db.session.scalar(
        select(Suppression).where(
            Suppression.digest.in_(digests),
            or_(Suppression.until.is_(None), Suppression.until > now),
        )
    )
    if entry is not None and entry.digest != digests[0]:
        entry.digest = digests[0]
    return entry


#: Built once: every signup asks twice (before and after taking the contact's lock).
_ACTIVE = select(_TABLE.c.id, _TABLE.c.digest, _TABLE.c.reason).where(
    _TABLE.c.digest.in_(bindparam("digests", expanding=True)),
    or_(_TABLE.c.until.is_(None), _TABLE.c.until > bindparam("now", type_=UTCDateTime())),
)
_REKEY = update(_TABLE).where(_TABLE.c.id == bindparam("entry")).values(digest=bindparam("current"))


def reason(canonical: str) -> SuppressionReason | None:
    """Why ``canonical`` is suppressed, if it is: ``find``'s answer, read with Core.

    An entry found under an old key is re-keyed in the caller's transaction, as ``find`` does.
    """
    digests = _digests(canonical)
    db.session.flush()  # an entry added in this transaction counts, as with find()
    connection = db.session.connection()
    entry = connection.execute(_ACTIVE, {"digests": digests, "now": utcnow()}).first()
    if entry is None:
        return None
    if entry.digest != digests[0]:
        connection.execute(_REKEY, {"entry": entry.id, "current": digests[0]})
    return entry.reason


def add(canonical: str, reason: SuppressionReason, until: datetime | None = None) -> Suppression:
    """Suppress ``canonical`` in the caller's transaction; a permanent reason always wins."""
    lift(canonical, only_temporary=True)
    existing = find(canonical)
    if existing is not None:
        if until is None:
            existing.until, existing.reason = None, reason
        return existing
    entry = Suppression(digest=digest(canonical), reason=reason, until=until)
    db.session.add(entry)
    return entry


#: Built once: every confirmation runs it. A Core DELETE on the table, because nothing in the
#: session holds these rows and the ORM's matching would be work for nothing.
_LIFT = delete(_TABLE).where(_TABLE.c.digest.in_(bindparam("digests", expanding=True)))
_LIFT_TEMPORARY = _LIFT.where(_TABLE.c.until.is_not(None))
#: The same for the usual single key (no SECRET_KEY_FALLBACKS): an expanding IN is rendered
#: anew for every execution, which cost twice what running this DELETE does.
_LIFT_ONE = Prepared(delete(_TABLE).where(_TABLE.c.digest == bindparam("digest")))
_LIFT_ONE_TEMPORARY = Prepared(_LIFT_ONE.statement.where(_TABLE.c.until.is_not(None)))


#: PostgreSQL: the entries of every digest in an array (``digests_of``), as one statement that
#: a confirmation can carry as a CTE (``services.confirmation``).
LIFT_ANY = delete(_TABLE).where(
    _TABLE.c.digest == any_(bindparam("digests", type_=postgresql.ARRAY(String)))
)


def digests_of(canonical: str) -> list[str]:
    """The digests ``canonical`` may be stored under, for ``LIFT_ANY``."""
    return _digests(canonical)


def lift(canonical: str, *, only_temporary: bool = False) -> None:
    """Remove the entries of ``canonical``; only a fresh confirmation may call this for good."""
    digests = _digests(canonical)
    db.session.flush()  # an entry added in this transaction is removed too, as it always was
    connection = db.session.connection()
    if len(digests) == 1:
        # Every confirmation runs this (on SQLite without SQLAlchemy's per-execution work).
        statement = _LIFT_ONE_TEMPORARY if only_temporary else _LIFT_ONE
        statement.execute(connection, {"digest": digests[0]})
    else:
        connection.execute(_LIFT_TEMPORARY if only_temporary else _LIFT, {"digests": digests})

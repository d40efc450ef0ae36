"""API tokens: one per consumer of the export API (a mailing list, an ESP integration).

A token is 256 random bits; we keep only its SHA-256. Random tokens need no slow password
hash (nothing to guess from a dictionary), and a lookup by hash never compares secrets
byte by byte, so the comparison leaks no timing about the token (L1); ``hmac.compare_digest``
on the stored hash makes that explicit rather than an accident of the index.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import select, update

from ..extensions import db
from ..models import ApiToken, Topic, utcnow
from . import audit

TOKEN_PREFIX = "pcapi_"  # noqa: S105 - a marker that tells our tokens apart, not a secret
#: ``last_used_at`` is written at most this often, so polling does not write on every page.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenNameTaken(ValueError):
    pass


class UnknownTopic(ValueError):
    pass


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def topic_ids_for(slugs: list[str] | None) -> list[int] | None:
    """Topic ids for ``slugs``; None (every topic) when no slugs are given."""
    if not slugs:
        return None
    rows = db.session.execute(select(Topic.slug, Topic.id).where(Topic.slug.in_(slugs))).all()
    found: dict[str, int] = {slug: topic_id for slug, topic_id in rows}
    missing = sorted(set(slugs) - set(found))
    if missing:
        raise UnknownTopic(", ".join(missing))
    return sorted(found.values())


def create(name: str, topic_slugs: list[str] | None, actor: str) -> tuple[ApiToken, str]:
    """Create a token; the secret is returned once and never stored."""
    name = name.strip()
    if not name or len(name) > 80:
        raise ValueError("a token name has 1 to 80 characters")
    if db.session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise TokenNameTaken(name)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name,
        token_hash=digest(secret),
        prefix=secret[: len(TOKEN_PREFIX) + 4],
        topic_ids=topic_ids_for(topic_slugs),
    )
    db.session.add(token)
    audit.record(actor, "api-token.create", name, topics=topic_slugs or "all")
    db.session.commit()
    return token, secret


def revoke(name: str, actor: str) -> bool:
    token = db.session.scalar(select(ApiToken).where(ApiToken.name == name))
    if token is None or token.revoked_at is not None:
        return False
    token.revoked_at = utcnow()
    audit.record(actor, "api-token.revoke", name)
    db.session.commit()
    return True


def listing() -> list[ApiToken]:
    return list(db.session.scalars(select(ApiToken).order_by(ApiToken.name)))


def authenticate(secret: str) -> ApiToken | None:
    """The active token for ``secret``, or None."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    wanted = digest(secret)
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == wanted))
    if token is None or not hmac.compare_digest(token.token_hash, wanted):
        return None
    if token.revoked_at is not None:
        return None
    return token


def record_use(token: ApiToken, action: str, *, ip: str | None, acknowledged: int | None) -> None:
    """Write the use to the audit log, and move the consumer's cursor forward.

    Asking for the page after cursor N acknowledges every entry up to N: that is what the lag
    check measures and what allows an erased address to be scrubbed from the feed.
    """
    now = utcnow()
    values: dict[str, object] = {}
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        values["last_used_at"] = now
    if acknowledged is not None and acknowledged > token.cursor:
        values.update(cursor=acknowledged, cursor_at=now)
    if values:
        db.session.execute(update(ApiToken).where(ApiToken.id == token.id).values(**values))
    audit.record(f"api:{token.name}", action, token.name, ip=ip)
    db.session.commit()

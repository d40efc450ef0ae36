"""Staff accounts: create, sign in, deactivate. Passwords are hashed with scrypt.

Werkzeug's ``generate_password_hash`` uses scrypt by default: a memory-hard function, like
argon2, without another dependency.
"""

from __future__ import annotations

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from .. import addresses
from ..extensions import db
from ..models import Role, User, utcnow
from . import audit

MIN_PASSWORD_LENGTH = 12
#: Checked against when the account does not exist, so both cases take the same time.
_DUMMY_HASH = generate_password_hash("not a real password, only for timing")


class AccountError(ValueError):
    """A user change was refused; the message says why."""


def create(
    email: str, role: str, password: str, *, actor: str = "cli", ip: str | None = None
) -> User:
    try:
        canonical = addresses.parse(email).canonical
    except addresses.InvalidAddress as exc:
        raise AccountError(f"not a valid email address ({exc.reason})") from None
    try:
        role_ = Role(role)
    except ValueError:
        raise AccountError("role must be admin, marketer or dpo") from None
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if db.session.scalar(select(User.id).where(User.email == canonical)) is not None:
        raise AccountError(f"{canonical} has an account already")
    user = User(email=canonical, role=role_, password_hash=generate_password_hash(password))
    db.session.add(user)
    audit.record(actor, "user.create", canonical, ip=ip, role=role_.value)
    db.session.commit()
    return user


def authenticate(email: str, password: str, *, ip: str | None = None) -> User | None:
    """The active user with these credentials, or None; every attempt is audited."""
    try:
        canonical = addresses.parse(email).canonical
    except addresses.InvalidAddress:
        canonical = (email or "").strip().lower()[:254]
    user = db.session.scalar(select(User).where(User.email == canonical))
    valid = check_password_hash(user.password_hash if user else _DUMMY_HASH, password or "")
    if user is None or not valid or not user.active:
        audit.record(canonical or "?", "login.failed", canonical, ip=ip)
        db.session.commit()
        return None
    user.last_login_at = utcnow()
    audit.record(user.email, "login", user.email, ip=ip)
    db.session.commit()
    return user


def load(session_id: str) -> User | None:
    """Flask-Login's user loader: ``id:version``; a stale version means signed out."""
    user_id, _, version = session_id.partition(":")
    if not (user_id.isdigit() and version.isdigit()):
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.session_version != int(version) or not user.active:
        return None
    return user


def deactivate(email: str, *, actor: str = "cli", ip: str | None = None) -> User:
    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise AccountError(f"no account for {email}")
    user.active = False
    user.session_version += 1  # signed out of every browser at once
    audit.record(actor, "user.deactivate", user.email, ip=ip)
    db.session.commit()
    return user


def set_role(email: str, role: str, *, actor: str, ip: str | None = None) -> User:
    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise AccountError(f"no account for {email}")
    old = user.role
    user.role = Role(role)
    user.session_version += 1
    audit.record(actor, "user.role", user.email, ip=ip, old=old.value, new=user.role.value)
    db.session.commit()
    return user


def all_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.email)))

"""Settings: defaults in code, then ``FLASK_*`` environment variables, then a test mapping.

Every key here can be set as ``FLASK_<KEY>`` (Flask's ``from_prefixed_env`` parses the value
as JSON when it can, so ``FLASK_MAIL_PORT=587`` is an int and ``FLASK_MAIL_USE_TLS=true`` a
bool). The README documents each key in one table; keep the two in step.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PROJECT_ROOT / "templates"
TRANSLATIONS_DIR = PROJECT_ROOT / "translations"
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"

#: The languages of the service. English is the source language of every string.
SUPPORTED_LOCALES: tuple[str, ...] = ("nl", "fr", "en")


class ConfigurationError(RuntimeError):
    """The settings cannot run the service safely; the message names the variable to set."""


DEFAULTS: dict[str, Any] = {
    "SITE_NAME": "Preference Center",
    # Links in emails are built from SERVER_NAME and this scheme, never from a request's Host.
    "PREFERRED_URL_SCHEME": "https",
    "SECRET_KEY_FALLBACKS": [],
    # 0 = not behind a proxy. N = trust N hops of X-Forwarded-For/-Proto/-Host/-Prefix.
    "PROXY_FIX_HOPS": 0,
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
    "BABEL_DEFAULT_LOCALE": "en",
    "BABEL_DEFAULT_TIMEZONE": "Europe/Brussels",
    "MAX_CONTENT_LENGTH": 10 * 1024 * 1024,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_SECURE": True,
    # Mail transport (Flask-Mail keys plus our hardening).
    "MAIL_SERVER": None,
    "MAIL_PORT": 25,
    "MAIL_USE_TLS": False,
    "MAIL_USE_SSL": False,
    "MAIL_USERNAME": None,
    "MAIL_PASSWORD": None,
    "MAIL_DEFAULT_SENDER": "Preference Center <no-reply@localhost>",
    "MAIL_TIMEOUT": 10.0,
    "MAIL_SSL_CA_FILE": None,
    # Flask-Mail suppresses sending when TESTING is on; our tests use a real SMTP server.
    "MAIL_SUPPRESS_SEND": False,
    # Outbox worker.
    "OUTBOX_BATCH_SIZE": 50,
    "OUTBOX_POLL_INTERVAL": 2.0,
    "OUTBOX_CONCURRENCY": 2,  # sender loops (threads, one SMTP connection each) per worker
    # PostgreSQL: don't wait for the WAL flush of each "sent" mark; a database crash may then
    # repeat the last fraction of a second of emails (never lose one). See mail/outbox.py.
    "OUTBOX_ASYNC_COMMIT": False,
    "OUTBOX_RETRY_BASE": 60,
    "OUTBOX_RETRY_MAX": 3600,
    "OUTBOX_RETRY_PERIOD": 5 * 24 * 3600,
    "OUTBOX_HARD_BOUNCE_LIMIT": 3,
    "OUTBOX_ALERT_AFTER": 5,
    # Rate limits (Flask-Limiter). memory:// is per process; use redis:// with several workers.
    "RATELIMIT_STORAGE_URI": "memory://",
    "RATELIMIT_HEADERS_ENABLED": False,
    "RATELIMIT_DEFAULT": "300 per minute",
    # Development mailbox: an SMTP catcher plus /dev/mailbox, only with debug on.
    "DEV_MAILBOX": None,
    "DEV_MAILBOX_PORT": 8025,
    "SQLITE_BUSY_TIMEOUT": 30.0,
    # Double opt-in.
    "EMAIL_CHECK_DELIVERABILITY": False,  # DNS lookups on signup; off so no request waits on DNS
    "CONFIRM_TOKEN_MAX_AGE": 7 * 24 * 3600,  # counted from when the email is sent (E5)
    "CONFIRM_EMAIL_INTERVAL": 24 * 3600,  # at most one confirmation email per address (C2)
    "PENDING_GRACE_DAYS": 7,  # expired requests kept this long for "send me a fresh link"
    "NOT_ME_BLOCK_DAYS": 90,  # "this was not me" blocks signup emails to the address
    "CONFIRMATION_HOURLY_CAP": 1000,  # confirmation emails per hour, all addresses (C10)
    "CONFIRMATION_HOURLY_CAP_PER_DOMAIN": 500,
    "SIGNUP_RATE_LIMIT": "5 per minute; 20 per hour",  # per IP, on every route that emails (C1, C6)
    "TOKEN_RATE_LIMIT": "30 per minute",  # per IP, on every page reached by a token (A14)
    "SIGNUP_MIN_SECONDS": 3,  # a form sent faster than this is a bot (C5)
    "SIGNUP_FORM_MAX_AGE": 3600,  # a form older than this is a replay (C5)
    "CONSENT_CLIENT_DATA_MONTHS": 24,  # then IP addresses are truncated and user agents dropped (K7)
    "SUPPRESSION_KEY": None,  # HMAC key of the suppression list; derived from SECRET_KEY if unset
    "SUPPRESSION_KEY_FALLBACKS": [],
    # Preference center.
    "MANAGE_TOKEN_MAX_AGE": 730 * 24 * 3600,  # manage links in old emails keep working...
    "UNSUBSCRIBE_TOKEN_MAX_AGE": 730 * 24 * 3600,  # ...and so do one-click unsubscribe links
    "EXPORT_TOKEN_MAX_AGE": 24 * 3600,  # a data download link works for a day
    "MANAGE_LINK_INTERVAL": 15 * 60,  # at most one "email me my link" per address per window
    "UNSUBSCRIBE_MAILBOX": None,  # e.g. "unsubscribe@example.be": adds a mailto to List-Unsubscribe
    "LEAVE_REASON_LINK_HOURS": 0,  # a leave reason is never linked to the person
    # Export and sync: the change feed, snapshots and webhooks for the mailing list.
    "SYNC_TOMBSTONE_DAYS": 30,  # erased addresses leave the feed this long after every consumer read them
    "SYNC_LAG_ALERT_HOURS": 24,  # `flask sync status` fails when a removal waited longer (L3)
    "API_PAGE_SIZE": 500,  # change feed items per page by default...
    "API_PAGE_SIZE_MAX": 5000,  # ...and at most
    "API_RATE_LIMIT": "600 per minute",  # per token, on every API route
    "WEBHOOK_BATCH_SIZE": 200,  # feed items per webhook POST
    "WEBHOOK_TIMEOUT": 10.0,  # seconds per POST
    "WEBHOOK_MAX_ATTEMPTS": 10,  # then the delivery is dead and waits for an admin
    "WEBHOOK_RETRY_BASE": 30,  # seconds before the first retry; doubles each time...
    "WEBHOOK_RETRY_MAX": 6 * 3600,  # ...up to this
    "WEBHOOK_ALLOW_HTTP": False,  # plain http:// receivers (development and tests only)
    "DKIM_PRIVATE_KEY": None,  # PEM (or a path to it): sign every email we send
    "DKIM_SELECTOR": None,
    "DKIM_DOMAIN": None,  # defaults to the sender's domain
    # Permission campaigns for imported contacts.
    "REPERMISSION_DEADLINE_DAYS": 30,  # who has not confirmed by then is purged
    "REPERMISSION_REMINDER_DAYS": 14,  # one reminder, to those who neither confirmed nor refused
    "REPERMISSION_HOURLY_CAP": 2000,  # permission emails per hour (throttled in the outbox)
    "REPERMISSION_HOURLY_CAP_PER_DOMAIN": 500,
    # Staff.
    "LOGIN_RATE_LIMIT": "10 per minute; 50 per hour",  # per IP, on the sign-in form
}


def load(app: Flask, test_config: dict[str, Any] | None) -> None:
    """Fill ``app.config`` in the documented order and refuse settings that are unsafe."""
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env()
    if test_config:
        app.config.from_mapping(test_config)
    development = bool(app.config.get("DEBUG")) or app.debug
    testing = bool(app.config.get("TESTING"))

    app.config.setdefault(
        "SQLALCHEMY_DATABASE_URI",
        f"sqlite:///{Path(app.instance_path) / 'preference-center.sqlite3'}",
    )

    if not app.config.get("SECRET_KEY"):
        if development:
            app.config["SECRET_KEY"] = _development_secret(Path(app.instance_path))
        elif not testing:
            raise ConfigurationError(
                "FLASK_SECRET_KEY is not set. Generate one with "
                '`python -c "import secrets; print(secrets.token_hex(32))"` and set it in the '
                "environment or in .env; the service never runs in production with a default secret."
            )

    if development:
        # Plain http on the developer's machine, and a cookie that works without TLS.
        app.config["SESSION_COOKIE_SECURE"] = False
        if app.config["DEV_MAILBOX"] is None:
            app.config["DEV_MAILBOX"] = app.config["MAIL_SERVER"] is None
        if app.config["DEV_MAILBOX"]:
            app.config["MAIL_SERVER"] = "127.0.0.1"
            app.config["MAIL_PORT"] = app.config["DEV_MAILBOX_PORT"]
            app.config["MAIL_USE_TLS"] = app.config["MAIL_USE_SSL"] = False
    else:
        # The development mailbox never exists in production, whatever the settings say.
        app.config["DEV_MAILBOX"] = False
    if app.config["MAIL_SERVER"] is None:
        app.config["MAIL_SERVER"] = "127.0.0.1"

    if not app.config.get("TRUSTED_HOSTS") and app.config.get("SERVER_NAME"):
        # A request for any other host gets 400, so no Host header can leak into a page.
        host = urlsplit("//" + app.config["SERVER_NAME"]).hostname
        hosts = [host]
        if development:
            hosts += ["localhost", "127.0.0.1"]
        app.config["TRUSTED_HOSTS"] = sorted({h for h in hosts if h})


def _development_secret(instance_path: Path) -> str:
    """Return the development secret, generated once and kept in the instance folder.

    Kept on disk so that links in the development mailbox survive a restart of ``make run``.
    """
    path = instance_path / "dev-secret-key"
    if path.exists():
        return path.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    path.write_text(secret)
    path.chmod(0o600)
    return secret

"""The preference page's choices: which topics it offers, and saving what the person chose.

Saving is one transaction that locks the person's row first (see subscriptions.py) and writes
a consent-ledger entry and a change-feed entry for every change. The page is saved often, so
the writes are Core statements, one per kind of change, built once at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, NamedTuple

from sqlalchemy import Integer, String, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql

from ..config import SUPPORTED_LOCALES
from ..extensions import db
from ..models import (
    ChangeKind,
    ConsentAction,
    ConsentEvent,
    ConsentText,
    Contact,
    Subscription,
    SubscriptionStatus,
    Topic,
    UTCDateTime,
    utcnow,
)
from . import changes, leaving, topics
from .confirmation import subscribe
from .leaving import LEAVE_TOPICS, LOCK_CONTACT, uses_ctes
from .preferences import MAX_PAUSE, InvalidChoice, LinkedContact, LinkRevoked
from .prepared import Prepared
from .subscriptions import Client
from .topics import TopicLabel


class ChangedElsewhere(Exception):
    """The preferences changed since the page was loaded, e.g. in another tab (F3)."""


@dataclass(frozen=True)
class TopicChoice:
    topic: TopicLabel
    subscribed: bool
    frequency: str | None


_TOPIC = Topic.__table__
_SUBSCRIPTION = Subscription.__table__

#: Every topic with this contact's subscription to it, if any, in display order.
_TOPICS_WITH_SUBSCRIPTION = (
    topics.select_labels()
    .add_columns(_SUBSCRIPTION.c.id, _SUBSCRIPTION.c.status, _SUBSCRIPTION.c.frequency)
    .outerjoin(
        _SUBSCRIPTION,
        (_SUBSCRIPTION.c.topic_id == _TOPIC.c.id)
        & (_SUBSCRIPTION.c.contact_id == bindparam("contact_id")),
    )
    .order_by(_TOPIC.c.position, _TOPIC.c.id)
)
_LABEL_COLUMNS = len(TopicLabel.__slots__)
#: On SQLite without SQLAlchemy's per-execution work (prepared.py): every preference page.
_PREPARED_TOPICS_WITH_SUBSCRIPTION = Prepared(_TOPICS_WITH_SUBSCRIPTION)


def choices(contact: Contact | LinkedContact) -> list[TopicChoice]:
    """The topics shown on the preference page: the public ones and any the person has."""
    return _choices(contact.id)


def _choices(contact_id: int) -> list[TopicChoice]:
    shown = []
    rows = _PREPARED_TOPICS_WITH_SUBSCRIPTION.execute(
        db.session.connection(), {"contact_id": contact_id}
    )
    for row in rows:
        topic = TopicLabel(*row[:_LABEL_COLUMNS])
        subscription_id, status, frequency = row[_LABEL_COLUMNS:]
        if not topic.is_public and subscription_id is None:
            continue
        shown.append(TopicChoice(topic, status is SubscriptionStatus.SUBSCRIBED, frequency))
    return shown


# --- saving -----------------------------------------------------------------------------------

_CONTACT = Contact.__table__


@dataclass(frozen=True)
class SavedPreferences:
    """What the page was saved as (the next page speaks ``language``)."""

    language: str
    prefs_version: int


_TEXT = ConsentText.__table__
#: The lock of subscriptions.lock_contact, returning what the page may change, and the consent
#: text the page showed (its language and hash, None if there is no such text): one statement
#: instead of two. A consent text never changes once published, so reading it in the lock's
#: statement reads what a statement after it would.
_LOCK_FOR_SAVE = LOCK_CONTACT.where(_CONTACT.c.id == bindparam("contact")).returning(
    _CONTACT.c.public_id,
    _CONTACT.c.language,
    _CONTACT.c.first_name,
    _CONTACT.c.paused_until,
    _CONTACT.c.prefs_version,
    select(_TEXT.c.language).where(_TEXT.c.id == bindparam("text")).scalar_subquery(),
    select(_TEXT.c.sha256).where(_TEXT.c.id == bindparam("text")).scalar_subquery(),
)
_CHANGE_FREQUENCY = (
    update(_SUBSCRIPTION)
    .where(
        _SUBSCRIPTION.c.contact_id == bindparam("contact"),
        _SUBSCRIPTION.c.topic_id == bindparam("topic"),
    )
    .values(frequency=bindparam("new_frequency"), version=_SUBSCRIPTION.c.version + 1)
)
_SAVE_CONTACT = (
    update(_CONTACT)
    .where(_CONTACT.c.id == bindparam("contact"))
    .values(
        language=bindparam("new_language"),
        first_name=bindparam("new_first_name"),
        paused_until=bindparam("new_paused_until", type_=UTCDateTime()),
        prefs_version=_CONTACT.c.prefs_version + 1,
    )
)
_RECORD = insert(ConsentEvent.__table__).values(channel="preference-page")


def _pg_save_and_record() -> Any:
    """PostgreSQL: ``_SAVE_CONTACT`` and ``_RECORD`` as one statement, ``WITH saved AS (UPDATE
    contact …) INSERT INTO consent_event … SELECT … FROM unnest(:topic_list, :action_list)``.

    As with the confirmation's CTEs (confirmation.py): every value is given, and no parameter
    is named after a column of ``contact``, which the CTE updates.
    """
    now = bindparam("now", type_=UTCDateTime())
    saved = _SAVE_CONTACT.values(updated_at=now).cte("saved")
    entries = (
        func.unnest(
            bindparam("topic_list", type_=postgresql.ARRAY(Integer)),
            bindparam("action_list", type_=postgresql.ARRAY(String)),
        )
        .table_valued("topic_id", "action", with_ordinality="position")
        .render_derived(name="entries")
    )
    text_id = bindparam("text", type_=Integer)
    record = leaving.ledger_rows(
        entries.c.topic_id,
        entries.c.action,
        now,
        order_by=entries.c.position,
        channel=bindparam("page_channel", "preference-page", String),
        consent_text_id=text_id,
        consent_text_sha256=bindparam("text_sha256", type_=String),
    )
    return record.add_cte(saved)


_PG_SAVE_AND_RECORD = _pg_save_and_record()


class _Locked(NamedTuple):
    """The contact as _LOCK_FOR_SAVE returns it."""

    public_id: str
    language: str
    first_name: str | None
    paused_until: datetime | None
    prefs_version: int
    text_language: str | None
    text_sha256: str | None


_PREPARED_LOCK_FOR_SAVE = Prepared(_LOCK_FOR_SAVE)
_PREPARED_SAVE_CONTACT = Prepared(_SAVE_CONTACT)
_PREPARED_RECORD = Prepared(_RECORD)
_PREPARED_CHANGE_FREQUENCY = Prepared(_CHANGE_FREQUENCY)


def update_preferences(
    contact_id: int,
    *,
    expected_version: int,
    subscribed: dict[str, str | None],
    language: str,
    first_name: str | None,
    paused_until: date | None,
    consent_text_id: int,
    client: Client,
) -> SavedPreferences:
    """Apply the preference page as submitted: ``subscribed`` maps topic slug to frequency.

    Refused with :class:`ChangedElsewhere` if anything changed since the page was shown, so
    two tabs never silently merge (F3). Everything is checked before anything is written;
    the writes are Core statements, one per kind of change (the page is saved often).
    """
    # Core statements on the session's connection: the ORM's execute adds nothing here.
    connection = db.session.connection()
    locked = _PREPARED_LOCK_FOR_SAVE.execute(
        connection, {"contact": contact_id, "text": consent_text_id}
    )
    if not locked:
        db.session.rollback()
        raise LinkRevoked()
    contact = _Locked(*locked[0])
    if contact.prefs_version != expected_version:
        db.session.rollback()
        raise ChangedElsewhere()
    if language not in SUPPORTED_LOCALES:
        raise InvalidChoice("language")
    if contact.text_language is None:
        raise InvalidChoice("consent text")
    pause = _pause_moment(paused_until)

    offered = {choice.topic.slug: choice for choice in _choices(contact_id)}
    unknown = set(subscribed) - set(offered)
    if unknown:
        raise InvalidChoice(f"topics {sorted(unknown)}")
    joined: dict[int, str | None] = {}  # topic id: frequency
    left: list[int] = []
    refrequenced: dict[int, str | None] = {}
    entries: list[tuple[ConsentAction, ChangeKind, int | None]] = []  # in the page's order
    for slug, choice in offered.items():
        topic = choice.topic
        wanted = slug in subscribed
        frequency = subscribed.get(slug) if wanted else None
        if frequency is not None and frequency not in (topic.frequencies or []):
            raise InvalidChoice(f"frequency {frequency!r} for {slug}")
        if wanted and frequency is None and topic.frequencies:
            frequency = topic.frequencies[0]
        if wanted and not choice.subscribed:
            joined[topic.id] = frequency
            entries.append((ConsentAction.CONFIRMED, ChangeKind.SUBSCRIBED, topic.id))
        elif not wanted and choice.subscribed:
            left.append(topic.id)
            entries.append((ConsentAction.WITHDRAWN, ChangeKind.UNSUBSCRIBED, topic.id))
        elif wanted and choice.frequency != frequency:  # subscribed, at another frequency
            refrequenced[topic.id] = frequency
            entries.append((ConsentAction.UPDATED, ChangeKind.UPDATED, topic.id))
    first_name = (first_name or "").strip()[:100] or None
    if (language, first_name, pause) != (
        contact.language,
        contact.first_name,
        contact.paused_until,
    ):
        entries.append((ConsentAction.UPDATED, ChangeKind.UPDATED, None))

    if not entries:
        db.session.commit()
        return SavedPreferences(contact.language, contact.prefs_version)
    now = utcnow()
    if joined:
        subscribe(connection, contact_id, list(joined), now, frequencies=joined)
    if left:
        connection.execute(LEAVE_TOPICS, {"contact": contact_id, "topics": left, "now": now})
    if refrequenced:
        _PREPARED_CHANGE_FREQUENCY.execute(
            connection,
            [
                {"contact": contact_id, "topic": topic_id, "new_frequency": frequency}
                for topic_id, frequency in refrequenced.items()
            ],
        )
    # The person's fields are written as submitted (unchanged ones keep their value), and
    # prefs_version goes up, so a page shown before this save is stale (F3).
    saved = {
        "contact": contact_id,
        "new_language": language,
        "new_first_name": first_name,
        "new_paused_until": pause,
    }
    if uses_ctes(connection):
        # One statement for both (_PG_SAVE_AND_RECORD); the ledger rows are the same.
        connection.execute(
            _PG_SAVE_AND_RECORD,
            {
                **saved,
                "now": now,
                "topic_list": [topic_id for _a, _k, topic_id in entries],
                "action_list": [action.value for action, _k, _t in entries],
                "event_ip": client.ip,
                "event_user_agent": client.ua(),
                "event_language": contact.text_language,
                "text": consent_text_id,
                "text_sha256": contact.text_sha256,
            },
        )
    else:
        _PREPARED_SAVE_CONTACT.execute(connection, saved)
        user_agent = client.ua()
        _PREPARED_RECORD.execute(
            connection,
            [
                {
                    "contact_id": contact_id,
                    "topic_id": topic_id,
                    "action": action,
                    "ip": client.ip,
                    "user_agent": user_agent,
                    "language": contact.text_language,
                    "consent_text_id": consent_text_id,
                    "consent_text_sha256": contact.text_sha256,
                }
                for action, _kind, topic_id in entries
            ],
        )
    changes.record_entries(contact.public_id, [(kind, topic_id) for _a, kind, topic_id in entries])
    db.session.commit()
    return SavedPreferences(language, contact.prefs_version + 1)


def _pause_moment(day: date | None) -> datetime | None:
    """Midnight UTC of the chosen day; a pause is in the future and lasts at most a year."""
    if day is None:
        return None
    today = utcnow().date()
    if day <= today or day - today > MAX_PAUSE:
        raise InvalidChoice("pause date")
    return datetime.combine(day, time.min, tzinfo=UTC)

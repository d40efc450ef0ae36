"""Reading the change feed: what the mailing list pulls (the API) or is pushed (webhooks).

The feed table holds only what happened (kind, subscriber, topic, time); the data of an item
is the person's *current* data, read when the page is served. So an item never carries more
than we hold now: an address erased meanwhile is simply not in it (its tombstone follows), and
a changed address reaches the list with the next item. Items of people whose subscription was
never confirmed are left out (L2), whatever the table holds.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import url_for
from sqlalchemy import Select, func, or_, select

from .. import tokens
from ..extensions import db
from ..models import ChangeKind, Contact, SubscriberChange, Subscription, Topic

#: The kinds that remove a member from the list (what the 48-hour rule is about).
REMOVALS = (ChangeKind.UNSUBSCRIBED, ChangeKind.ERASED, ChangeKind.BOUNCED)
_CURSOR_PREFIX = "pc1:"
#: What the mailing list gets of a person, in the feed and in the snapshot alike.
MEMBER_COLUMNS = (
    Contact.public_id,
    Contact.email,
    Contact.first_name,
    Contact.last_name,
    Contact.language,
    Contact.paused_until,
    Contact.manage_version,
)


class CursorInvalid(ValueError):
    """A cursor we did not hand out (or from an incompatible version)."""


def encode_cursor(change_id: int) -> str:
    """An opaque cursor for the position after ``change_id``; stable across restarts."""
    raw = f"{_CURSOR_PREFIX}{change_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The change id a cursor stands for; no cursor means the beginning of the feed."""
    if not cursor:
        return 0
    if len(cursor) > 64:
        raise CursorInvalid(cursor)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CursorInvalid(cursor) from None
    number = raw.removeprefix(_CURSOR_PREFIX)
    if number == raw or not number.isdigit() or len(number) > 18:
        raise CursorInvalid(cursor)
    return int(number)


def high_water() -> int:
    """The id of the newest entry visible to this transaction (the snapshot's cursor)."""
    return db.session.scalar(select(func.coalesce(func.max(SubscriberChange.id), 0))) or 0


def in_scope(query: Select[Any], topic_ids: Iterable[int] | None) -> Select[Any]:
    """Restrict feed entries to ``topic_ids`` (None: every topic); profile entries stay."""
    if topic_ids is None:
        return query
    return query.where(
        or_(SubscriberChange.topic_id.in_(list(topic_ids)), SubscriberChange.topic_id.is_(None))
    )


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    #: The cursor to ask for next: after the last entry *examined*, shown or not.
    last_id: int
    has_more: bool

    @property
    def cursor(self) -> str:
        return encode_cursor(self.last_id)


class Links:
    """Each subscriber's preference page and one-click unsubscribe, signed in bulk.

    ``url_for`` and itsdangerous are too slow to call twice per row of a feed page or a
    snapshot; the URL is built once around a placeholder and the tokens come from a minter.
    The snapshot takes the URLs' fixed parts from here and signs with ``tokens.signer``.
    """

    _PLACEHOLDER = "TOKEN"

    def __init__(self) -> None:
        self._manage = tokens.minter(tokens.Purpose.MANAGE)
        self._unsubscribe = tokens.minter(tokens.Purpose.UNSUBSCRIBE)
        self._manage_url = url_for(
            "preferences.manage", token=self._PLACEHOLDER, _external=True
        ).split(self._PLACEHOLDER)
        self._unsubscribe_url = url_for(
            "preferences.one_click", token=self._PLACEHOLDER, _external=True
        ).split(self._PLACEHOLDER)

    def manage(self, public_id: str, manage_version: int) -> str:
        head, tail = self._manage_url
        return head + self._manage({"c": public_id, "v": manage_version}) + tail

    def unsubscribe(self, public_id: str, topic_id: int | None) -> str:
        head, tail = self._unsubscribe_url
        return head + self._unsubscribe({"c": public_id, "t": topic_id}) + tail

    def manage_url_parts(self) -> tuple[str, str]:
        """The preference page's URL before and after the token."""
        head, tail = self._manage_url
        return head, tail

    def unsubscribe_url_parts(self) -> tuple[str, str]:
        """The one-click unsubscribe URL before and after the token."""
        head, tail = self._unsubscribe_url
        return head, tail


def topic_slugs() -> dict[int, str]:
    return {topic_id: slug for topic_id, slug in db.session.execute(select(Topic.id, Topic.slug))}


def read_page(
    after: int,
    limit: int,
    topic_ids: Iterable[int] | None,
    links: Links | None = None,
    until: int | None = None,
) -> Page:
    """Up to ``limit`` entries after ``after`` (and up to ``until``), oldest first, rendered."""
    scope = None if topic_ids is None else frozenset(topic_ids)
    query = select(
        SubscriberChange.id,
        SubscriberChange.kind,
        SubscriberChange.subscriber_id,
        SubscriberChange.topic_id,
        SubscriberChange.occurred_at,
        SubscriberChange.email,
    )
    query = in_scope(query.where(SubscriberChange.id > after), scope)
    if until is not None:
        query = query.where(SubscriberChange.id <= until)
    rows = db.session.execute(query.order_by(SubscriberChange.id).limit(limit + 1)).all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    if not rows:
        return Page([], after, False)
    render = _renderer(rows, scope, links or Links())
    items = [item for row in rows if (item := render(row)) is not None]
    return Page(items, rows[-1].id, has_more)


def _renderer(
    rows: list[Any], scope: frozenset[int] | None, links: Links
) -> Callable[[Any], dict[str, Any] | None]:
    """Load what the page's items need in three queries, and return the per-row renderer."""
    slugs = topic_slugs()
    public_ids = {r.subscriber_id for r in rows if r.kind is not ChangeKind.ERASED}
    contacts = {
        c.public_id: c
        for c in db.session.execute(
            select(Contact.id, *MEMBER_COLUMNS).where(Contact.public_id.in_(public_ids))
        ).all()
    }
    # Per person, their subscriptions by topic: a profile item looks at one person's only,
    # not at every subscription of the page (a page holds up to API_PAGE_SIZE_MAX people).
    subscriptions: dict[int, dict[int, Any]] = {}
    for s in db.session.execute(
        select(
            Subscription.contact_id,
            Subscription.topic_id,
            Subscription.frequency,
            Subscription.confirmed_at,
        ).where(Subscription.contact_id.in_([c.id for c in contacts.values()]))
    ):
        subscriptions.setdefault(s.contact_id, {})[s.topic_id] = s

    def render(row: Any) -> dict[str, Any] | None:
        item: dict[str, Any] = {
            "cursor": encode_cursor(row.id),
            "type": row.kind.value,
            "subscriber_id": row.subscriber_id,
            "occurred_at": iso(row.occurred_at),
            "topic": slugs.get(row.topic_id) if row.topic_id else None,
        }
        if row.kind is ChangeKind.ERASED:
            item["email"] = row.email  # None once scrubbed: the id alone must do then
            return item
        contact = contacts.get(row.subscriber_id)
        if contact is None:
            return None  # erased since: its tombstone comes later in the feed
        if row.topic_id is not None:
            subscription = subscriptions.get(contact.id, {}).get(row.topic_id)
            if subscription is None or subscription.confirmed_at is None:
                return None  # never confirmed: never leaves the service (L2)
            frequency, confirmed_at = subscription.frequency, subscription.confirmed_at
        else:
            own = subscriptions.get(contact.id, {})
            if not any(
                s.confirmed_at and (scope is None or topic_id in scope)
                for topic_id, s in own.items()
            ):
                return None
            frequency, confirmed_at = None, None
        item.update(
            email=contact.email,
            first_name=contact.first_name,
            last_name=contact.last_name,
            language=contact.language,
        )
        if row.kind in (ChangeKind.SUBSCRIBED, ChangeKind.UPDATED):
            item.update(
                frequency=frequency,
                confirmed_at=iso(confirmed_at),
                paused_until=iso(contact.paused_until),
                manage_url=links.manage(contact.public_id, contact.manage_version),
                unsubscribe_url=links.unsubscribe(contact.public_id, row.topic_id),
            )
        return item

    return render


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None

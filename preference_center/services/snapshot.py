"""The full export of a topic's subscribers, streamed with constant memory (L4).

One read transaction gives the rows and the feed's cursor at the same moment (F5): on
PostgreSQL it runs at REPEATABLE READ, on SQLite a read transaction in WAL mode already sees
one snapshot. A client that loads the snapshot and then follows the feed from its cursor
misses nothing and needs nothing twice (re-applying an item is harmless anyway).

Rows come through a server-side cursor in pages, and leave as text chunks of about 64 kB,
so memory stays flat whatever the number of subscribers.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring as _quote  # type: ignore[attr-defined]
from typing import Any

from flask import current_app
from sqlalchemy import Connection, func, select

from ..extensions import db
from ..models import Contact, SubscriberChange, Subscription, SubscriptionStatus, Topic
from .feed import MEMBER_COLUMNS, Links, encode_cursor, iso
from .preferences import neutralise

FORMATS = ("ndjson", "csv", "json")
MEDIA_TYPES = {
    "ndjson": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
}
#: Column names that Mailchimp's (and Brevo's) importer maps without help.
CSV_HEADER = [
    "Email Address",
    "First Name",
    "Last Name",
    "Language",
    "Subscriber ID",
    "Topic",
    "Frequency",
    "Confirmed At",
    "Paused Until",
    "Manage URL",
    "Unsubscribe URL",
]
_CHUNK = 64 * 1024
_FETCH = 2000


@dataclass
class Snapshot:
    """An open snapshot: its cursor is known before the first row is sent."""

    connection: Connection
    topic_id: int
    slug: str
    high_water: int
    rows: Any

    @property
    def cursor(self) -> str:
        return encode_cursor(self.high_water)

    def close(self) -> None:
        self.rows.close()
        self.connection.close()


def open_snapshot(topic: Topic) -> Snapshot:
    # Plain values: the snapshot outlives the request's session, and with it the ORM object.
    topic_id, slug = topic.id, topic.slug
    """Start the read transaction and read the feed's position inside it."""
    options: dict[str, Any] = {"stream_results": True, "yield_per": _FETCH}
    if db.engine.dialect.name == "postgresql":
        options["isolation_level"] = "REPEATABLE READ"
    connection = db.engine.connect().execution_options(**options)
    try:
        connection.begin()
        high_water = connection.scalar(select(func.coalesce(func.max(SubscriberChange.id), 0)))
        rows = connection.execute(
            select(*MEMBER_COLUMNS, Subscription.frequency, Subscription.confirmed_at)
            .join(Subscription, Subscription.contact_id == Contact.id)
            .where(
                Subscription.topic_id == topic_id,
                Subscription.status == SubscriptionStatus.SUBSCRIBED,
                Subscription.confirmed_at.is_not(None),
                # Bounced out: no mail reaches them, and the feed told the list (L2).
                Contact.hard_bounces < int(current_app.config["OUTBOX_HARD_BOUNCE_LIMIT"]),
            )
            .order_by(Contact.id)
        )
    except Exception:
        connection.close()
        raise
    return Snapshot(connection, topic_id, slug, int(high_water or 0), rows)


def _records(snapshot: Snapshot, links: Links) -> Iterator[tuple[Any, ...]]:
    """Each row as the tuple of CSV_HEADER's fields."""
    slug, topic_id = snapshot.slug, snapshot.topic_id
    for row in snapshot.rows:
        yield (
            row.email,
            row.first_name,
            row.last_name,
            row.language,
            row.public_id,
            slug,
            row.frequency,
            iso(row.confirmed_at),
            iso(row.paused_until),
            links.manage(row.public_id, row.manage_version),
            links.unsubscribe(row.public_id, topic_id),
        )


_KEYS = (
    "email",
    "first_name",
    "last_name",
    "language",
    "subscriber_id",
    "topic",
    "frequency",
    "confirmed_at",
    "paused_until",
    "manage_url",
    "unsubscribe_url",
)


def stream(snapshot: Snapshot, fmt: str, links: Links) -> Iterator[str]:
    """The snapshot in ``fmt``, in chunks; closes the transaction when done or abandoned."""
    try:
        if fmt == "csv":
            yield from _csv(snapshot, links)
        else:
            yield from _json_lines(snapshot, links, as_array=fmt == "json")
    finally:
        snapshot.close()


#: '{"email":', ',"first_name":', ...: the fixed text before each value of a JSON row.
_PREFIXES = tuple(("{" if i == 0 else ",") + f'"{key}":' for i, key in enumerate(_KEYS))


def _object(record: tuple[str | None, ...]) -> str:
    """One row as a JSON object, its keys in _KEYS order.

    Every value is a string or None, so the row is put together from the fixed key text and
    json's C string escaper: half the time of building a dict and encoding it, on a path
    that runs a million times per snapshot.
    """
    return (
        "".join(
            [
                prefix + ("null" if value is None else _quote(value))
                for prefix, value in zip(_PREFIXES, record, strict=True)
            ]
        )
        + "}"
    )


def _json_lines(snapshot: Snapshot, links: Links, *, as_array: bool) -> Iterator[str]:
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    buffer: list[str] = []
    size = 0
    separator = ",\n" if as_array else "\n"
    if as_array:
        head = {"topic": snapshot.slug, "cursor": snapshot.cursor}
        buffer.append(encode(head)[:-1] + ',"subscribers":[\n')
    first = True
    for record in _records(snapshot, links):
        line = _object(record)
        if as_array:
            line = line if first else separator + line
            first = False
        else:
            line += "\n"
        buffer.append(line)
        size += len(line)
        if size >= _CHUNK:
            yield "".join(buffer)
            buffer, size = [], 0
    if as_array:
        buffer.append("\n]}\n")
    if buffer:
        yield "".join(buffer)


def _csv(snapshot: Snapshot, links: Links) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for record in _records(snapshot, links):
        # Names are typed by subscribers: neutralise formulas (L5). The rest is ours.
        writer.writerow((record[0], neutralise(record[1]), neutralise(record[2]), *record[3:]))
        if out.tell() >= _CHUNK:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()

"""The full export of a topic's subscribers, streamed with constant memory (L4).

One read transaction gives the rows and the feed's cursor at the same moment (F5): on
PostgreSQL it runs at REPEATABLE READ, on SQLite a read transaction in WAL mode already sees
one snapshot. A client that loads the snapshot and then follows the feed from its cursor
misses nothing and needs nothing twice (re-applying an item is harmless anyway).

Rows come through the driver's cursor (server-side on PostgreSQL) in pages of _FETCH rows,
and each page leaves as one text chunk of about half a megabyte, so memory stays flat
whatever the number of subscribers. A row costs a few microseconds: plain tuples from the
driver, one format string per row, and tokens signed with a key and a timestamp prepared
once per snapshot (tokens.signer).
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring as _quote  # type: ignore[attr-defined]
from typing import Any

from flask import current_app
from sqlalchemy import Connection, func, select

from .. import tokens
from ..extensions import db
from ..models import Contact, SubscriberChange, Subscription, SubscriptionStatus, Topic
from .feed import MEMBER_COLUMNS, Links, encode_cursor
from .preferences import FORMULA_START

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
#: Rows per fetch from the database; one fetch leaves as one chunk of about 0.5 MB.
_FETCH = 1000


@dataclass
class Snapshot:
    """An open snapshot: its cursor is known before the first row is sent."""

    connection: Connection
    topic_id: int
    slug: str
    high_water: int
    #: A DBAPI cursor over the rows of _COLUMNS (server-side on PostgreSQL).
    rows: Any
    dialect: str

    @property
    def cursor(self) -> str:
        return encode_cursor(self.high_water)

    def close(self) -> None:
        try:
            self.rows.close()
        finally:
            self.connection.close()


#: What a snapshot row is made of, in this order.
_COLUMNS = (*MEMBER_COLUMNS, Subscription.frequency, Subscription.confirmed_at)


def open_snapshot(topic: Topic) -> Snapshot:
    """Start the read transaction and read the feed's position inside it."""
    # Plain values: the snapshot outlives the request's session, and with it the ORM object.
    topic_id, slug = topic.id, topic.slug
    options: dict[str, Any] = {}
    dialect = db.engine.dialect.name
    if dialect == "postgresql":
        options["isolation_level"] = "REPEATABLE READ"
    connection = db.engine.connect().execution_options(**options)
    try:
        connection.begin()
        high_water = connection.scalar(select(func.coalesce(func.max(SubscriberChange.id), 0)))
        query = (
            select(*_COLUMNS)
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
        rows = _raw_cursor(connection, query)
    except Exception:
        connection.close()
        raise
    return Snapshot(connection, topic_id, slug, int(high_water or 0), rows, dialect)


def _raw_cursor(connection: Connection, query: Any) -> Any:
    """The driver's own cursor over ``query``, in the connection's transaction.

    A million rows through SQLAlchemy's result rows and column types cost more than the
    rest of the snapshot; the driver's plain tuples are all it needs (the two dates are
    converted by _iso_function). The query's only values are two integers and a status,
    rendered into the SQL.
    """
    sql = str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    driver = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        # A server-side cursor: PostgreSQL sends each fetch's rows only when asked.
        cursor = driver.cursor(name="snapshot")
    else:
        cursor = driver.cursor()  # SQLite steps through the rows as they are fetched
    cursor.execute(sql)
    return cursor


def _batches(snapshot: Snapshot) -> Iterator[list[tuple[Any, ...]]]:
    fetch = snapshot.rows.fetchmany
    while batch := fetch(_FETCH):
        yield batch


def _iso_function(dialect: str) -> Callable[[Any], str]:
    """``feed.iso`` for a stored naive-UTC date as the driver returns it (never None)."""
    if dialect != "sqlite":
        return lambda moment: moment.isoformat() + "Z"  # a naive datetime

    def sqlite_iso(stored: str) -> str:
        # SQLAlchemy stores "2026-11-29 16:05:27.123456"; isoformat drops a zero fraction.
        if len(stored) == 26 and stored[10] == " " and stored[19] == ".":
            if stored.endswith(".000000"):
                return f"{stored[:10]}T{stored[11:19]}Z"
            return f"{stored[:10]}T{stored[11:]}Z"
        return datetime.fromisoformat(stored).isoformat() + "Z"

    return sqlite_iso


class _Links:
    """The two signed links of each row, minted with one timestamp for the whole snapshot.

    The same URLs as ``Links`` (their fixed text taken from it), and the same tokens as
    ``tokens.make`` at the snapshot's start: the payloads' compact JSON is written here
    rather than by a JSON encoder, and a test checks every byte against the slow path.
    """

    def __init__(self, links: Links, topic_id: int) -> None:
        self.manage_url = links.manage_url_parts()
        self.unsubscribe_url = links.unsubscribe_url_parts()
        now = int(time.time())
        self.sign_manage = tokens.signer(tokens.Purpose.MANAGE, now)
        self.sign_unsubscribe = tokens.signer(tokens.Purpose.UNSUBSCRIBE, now)
        #: '{"c":' + the id's JSON + this = the unsubscribe payload.
        self.unsubscribe_tail = ',"t":' + json.dumps(topic_id) + "}"


def stream(snapshot: Snapshot, fmt: str, links: Links) -> Iterator[bytes]:
    """The snapshot in ``fmt``, in UTF-8 chunks; closes the transaction when done or abandoned.

    Each row is encoded on its own: a row with an accented name costs as much to encode as
    before, but the others are copied, where one 0.5 MB chunk with any accent in it is
    encoded character by character (0.5 us per row).
    """
    try:
        if fmt == "csv":
            yield from _csv(snapshot, links)
        else:
            yield from _json_lines(snapshot, links, as_array=fmt == "json")
    finally:
        snapshot.close()


def _json_lines(snapshot: Snapshot, links: Links, *, as_array: bool) -> Iterator[bytes]:
    """NDJSON, or one JSON document; the same text as json.dumps(ensure_ascii=False).

    Every value is a string or None, so a row is one f-string (a third of the time of a
    %-format with fifteen values) of json's C string escaper's output. The links are
    escaped in two fixed parts around the token, which never needs escaping (URL-safe
    base64 and dots).
    """
    signed = _Links(links, snapshot.topic_id)
    sign_manage, sign_unsubscribe = signed.sign_manage, signed.sign_unsubscribe
    unsubscribe_tail = signed.unsubscribe_tail
    manage_head, manage_tail = (
        _quote(signed.manage_url[0])[:-1],
        _quote(signed.manage_url[1])[1:],
    )
    unsubscribe_head, unsubscribe_tail_url = (
        _quote(signed.unsubscribe_url[0])[:-1],
        _quote(signed.unsubscribe_url[1])[1:],
    )
    iso = _iso_function(snapshot.dialect)
    slug = _quote(snapshot.slug)
    quote = _quote
    separator = b",\n" if as_array else b"\n"
    if as_array:
        head = json.dumps(
            {"topic": snapshot.slug, "cursor": snapshot.cursor},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        yield (head[:-1] + ',"subscribers":[\n').encode()
    first = True
    for batch in _batches(snapshot):
        lines = []
        append = lines.append
        for (
            public_id,
            email,
            first_name,
            last_name,
            language,
            paused,
            version,
            frequency,
            at,
        ) in batch:
            subscriber = quote(public_id)  # its JSON, in the row and in the payloads
            manage = sign_manage(f'{{"c":{subscriber},"v":{version:d}}}'.encode())
            unsubscribe = sign_unsubscribe(f'{{"c":{subscriber}{unsubscribe_tail}'.encode())
            append(
                f'{{"email":{quote(email)},'
                f'"first_name":{"null" if first_name is None else quote(first_name)},'
                f'"last_name":{"null" if last_name is None else quote(last_name)},'
                f'"language":{quote(language)},'
                f'"subscriber_id":{subscriber},'
                f'"topic":{slug},'
                f'"frequency":{"null" if frequency is None else quote(frequency)},'
                f'"confirmed_at":"{iso(at)}",'
                f'"paused_until":{"null" if paused is None else quote(iso(paused))},'
                f'"manage_url":{manage_head}{manage}{manage_tail},'
                f'"unsubscribe_url":{unsubscribe_head}{unsubscribe}{unsubscribe_tail_url}}}'.encode()
            )
        if as_array and not first:
            lines[0] = separator + lines[0]
        first = False
        yield separator.join(lines) + (b"" if as_array else b"\n")
    if as_array:
        yield b"\n]}\n"


#: Characters that make csv.writer (excel dialect) quote a cell, but the comma; and NUL.
_CSV_SPECIAL = re.compile('["\r\n\0]').search


def _csv(snapshot: Snapshot, links: Links) -> Iterator[bytes]:
    """CSV with CSV_HEADER, as csv.writer writes it; names neutralised against formulas (L5).

    csv.writer takes about 6 us per row of eleven cells. Almost no row has a cell to quote,
    so a row is one f-string. Whether it has one is seen on the first nine cells written
    with their commas: more than nine commas, or a quote, CR, LF or NUL, and the row goes
    to csv.writer. The last two cells, the links, are checked once (their fixed parts).
    """
    signed = _Links(links, snapshot.topic_id)
    sign_manage, sign_unsubscribe = signed.sign_manage, signed.sign_unsubscribe
    unsubscribe_tail = signed.unsubscribe_tail
    manage_head, manage_tail = signed.manage_url
    unsubscribe_head, unsubscribe_tail_url = signed.unsubscribe_url
    iso = _iso_function(snapshot.dialect)
    slug = snapshot.slug
    quote = _quote
    formula = FORMULA_START
    special = _CSV_SPECIAL
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    yield out.getvalue().encode()
    out.seek(0)
    out.truncate()
    # If a fixed part of the links needs quoting (an odd SERVER_NAME), every row goes
    # through csv.writer.
    fixed = "".join([manage_head, manage_tail, unsubscribe_head, unsubscribe_tail_url])
    commas = 9 if "," not in fixed and special(fixed) is None else -1
    for batch in _batches(snapshot):
        lines = []
        append = lines.append
        for (
            public_id,
            email,
            first_name,
            last_name,
            language,
            paused,
            version,
            frequency,
            at,
        ) in batch:
            subscriber = quote(public_id)  # its JSON, for the payloads
            manage = sign_manage(f'{{"c":{subscriber},"v":{version:d}}}'.encode())
            unsubscribe = sign_unsubscribe(f'{{"c":{subscriber}{unsubscribe_tail}'.encode())
            # Names are typed by subscribers: neutralise formulas (L5). The rest is ours.
            if first_name and first_name.startswith(formula):
                first_name = "'" + first_name
            if last_name and last_name.startswith(formula):
                last_name = "'" + last_name
            cells = (
                f"{email},{first_name or ''},{last_name or ''},{language},{public_id},"
                f"{slug},{frequency or ''},{iso(at)},{'' if paused is None else iso(paused)},"
            )
            if cells.count(",") == commas and special(cells) is None:
                append(
                    f"{cells}{manage_head}{manage}{manage_tail},"
                    f"{unsubscribe_head}{unsubscribe}{unsubscribe_tail_url}\r\n".encode()
                )
                continue
            writer.writerow(
                (
                    email,
                    first_name,
                    last_name,
                    language,
                    public_id,
                    slug,
                    frequency,
                    iso(at),
                    None if paused is None else iso(paused),
                    manage_head + manage + manage_tail,
                    unsubscribe_head + unsubscribe + unsubscribe_tail_url,
                )
            )
            append(out.getvalue().encode())
            out.seek(0)
            out.truncate()
        yield b"".join(lines)

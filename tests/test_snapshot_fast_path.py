"""The snapshot's fast path writes exactly what the obvious code writes (L4, L5).

``services/snapshot.py`` reads plain driver tuples, fills one format string per row and signs
the links with a key and a timestamp prepared once (``tokens.signer``). Here the same snapshot
is written the slow, obvious way (ORM rows, ``feed.iso``, ``url_for`` and ``tokens.make``,
``json.dumps`` of a dict, ``csv.writer`` with ``neutralise``) at the same frozen moment, and
the two must be equal byte for byte, on every backend, with names that need escaping,
quoting or neutralising.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from builders import seed_topics
from flask import url_for
from freezegun import freeze_time
from sqlalchemy import select
from sync_support import bearer, new_token

from preference_center import tokens
from preference_center.extensions import db
from preference_center.models import (
    Contact,
    ContactSource,
    Subscription,
    SubscriptionStatus,
    Topic,
)
from preference_center.services import feed, snapshot
from preference_center.services.preferences import neutralise

#: Everything a subscriber can type that JSON must escape or CSV must quote or neutralise.
NAMES = [
    "=SUM(A1:A9)",
    "+32 470 00 00 00",
    "-minus",
    "@handle",
    "\tTab",
    "\rReturn",
    'quote " and, comma',
    "comma, only",
    "line\nbreak",
    "crlf\r\nbreak",
    "back\\slash",
    "Zoë Ünïcødé Lefèvre",
    "line\u2028separator",
    "control\x01\x1fchars",
    "emoji 😀",
    "it's",
    '"',
    " leading space",
    "",
    None,
    "Plain",
]
MOMENT = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def topics(app):
    seed_topics(app)


def populate(app) -> None:
    """Members of "newsletter" with every kind of name, and people who must be left out."""
    with app.app_context():
        newsletter = db.session.scalar(select(Topic).where(Topic.slug == "newsletter"))
        other = db.session.scalar(select(Topic).where(Topic.slug != "newsletter"))
        limit = int(app.config["OUTBOX_HARD_BOUNCE_LIMIT"])
        for n, name in enumerate(NAMES * 2):
            contact = Contact(
                email=f"p{n:03d}@example.be",
                email_display=f"p{n:03d}@example.be",
                first_name=name,
                last_name=NAMES[-1 - n % len(NAMES)],
                language=("nl", "fr", "en")[n % 3],
                source=ContactSource.FORM,
                manage_version=1 + n % 4,
                # A pause with and without a fraction of a second, or none.
                paused_until=(
                    None
                    if n % 3 == 0
                    else MOMENT + timedelta(days=n, microseconds=(n % 2) * 123456)
                ),
            )
            db.session.add(contact)
            db.session.flush()
            status, confirmed_at = (
                SubscriptionStatus.SUBSCRIBED,
                MOMENT - timedelta(seconds=n, microseconds=(n % 2) * 5),
            )
            if n == 5:
                status, confirmed_at = SubscriptionStatus.PENDING, None
            elif n == 6:
                status = SubscriptionStatus.UNSUBSCRIBED
            elif n == 7:
                contact.hard_bounces = limit  # bounced out
            db.session.add(
                Subscription(
                    contact_id=contact.id,
                    topic_id=newsletter.id if n != 8 else other.id,
                    status=status,
                    frequency=None if n % 2 else "monthly",
                    confirmed_at=confirmed_at,
                )
            )
        db.session.commit()
        db.session.remove()


def reference(app, slug: str, fmt: str) -> str:
    """The snapshot as the obvious code writes it (the code before the fast path)."""
    with app.test_request_context():
        topic = db.session.scalar(select(Topic).where(Topic.slug == slug))
        rows = db.session.execute(
            select(*feed.MEMBER_COLUMNS, Subscription.frequency, Subscription.confirmed_at)
            .join(Subscription, Subscription.contact_id == Contact.id)
            .where(
                Subscription.topic_id == topic.id,
                Subscription.status == SubscriptionStatus.SUBSCRIBED,
                Subscription.confirmed_at.is_not(None),
                Contact.hard_bounces < int(app.config["OUTBOX_HARD_BOUNCE_LIMIT"]),
            )
            .order_by(Contact.id)
        ).all()
        cursor = feed.encode_cursor(feed.high_water())
        records = [
            (
                r.email,
                r.first_name,
                r.last_name,
                r.language,
                r.public_id,
                slug,
                r.frequency,
                feed.iso(r.confirmed_at),
                feed.iso(r.paused_until),
                url_for(
                    "preferences.manage",
                    token=tokens.make(
                        tokens.Purpose.MANAGE, {"c": r.public_id, "v": r.manage_version}
                    ),
                    _external=True,
                ),
                url_for(
                    "preferences.one_click",
                    token=tokens.make(
                        tokens.Purpose.UNSUBSCRIBE, {"c": r.public_id, "t": topic.id}
                    ),
                    _external=True,
                ),
            )
            for r in rows
        ]
        db.session.remove()
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(snapshot.CSV_HEADER)
        for record in records:
            writer.writerow((record[0], neutralise(record[1]), neutralise(record[2]), *record[3:]))
        return out.getvalue()
    keys = (
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
    objects = [
        json.dumps(dict(zip(keys, record, strict=True)), ensure_ascii=False, separators=(",", ":"))
        for record in records
    ]
    if fmt == "ndjson":
        return "".join(line + "\n" for line in objects)
    head = json.dumps({"topic": slug, "cursor": cursor}, ensure_ascii=False, separators=(",", ":"))
    return head[:-1] + ',"subscribers":[\n' + ",\n".join(objects) + "\n]}\n"


@pytest.mark.parametrize("fmt", snapshot.FORMATS)
def test_the_fast_path_writes_the_obvious_codes_bytes(app, client, fmt, monkeypatch):
    populate(app)
    secret = new_token(app)
    monkeypatch.setattr(snapshot, "_FETCH", 7)  # several fetches, one of them partial
    with freeze_time(MOMENT + timedelta(hours=1)):
        response = client.get(
            f"/api/v1/subscribers?topic=newsletter&format={fmt}", headers=bearer(secret)
        )
        assert response.status_code == 200
        body = response.get_data(as_text=True)
        expected = reference(app, "newsletter", fmt)
    assert body == expected
    lines = body.count("\n")
    assert lines >= len(NAMES) * 2 - 4  # every member, and nobody left out was let in
    for name in ("p005@", "p006@", "p007@", "p008@"):
        assert name not in body


@pytest.mark.parametrize("fmt", snapshot.FORMATS)
def test_an_empty_snapshot_is_still_well_formed(app, client, fmt):
    secret = new_token(app)
    response = client.get(
        f"/api/v1/subscribers?topic=newsletter&format={fmt}", headers=bearer(secret)
    )
    assert response.get_data(as_text=True) == reference(app, "newsletter", fmt)


def test_snapshot_links_verify_with_load_and_carry_their_scope(app, client):
    populate(app)
    secret = new_token(app)
    response = client.get("/api/v1/subscribers?topic=newsletter", headers=bearer(secret))
    rows = [json.loads(line) for line in response.get_data(as_text=True).split("\n")[:-1]]
    with app.app_context():
        topic_id = db.session.scalar(select(Topic.id).where(Topic.slug == "newsletter"))
        versions = {c.public_id: c.manage_version for c in db.session.scalars(select(Contact))}
    for row in rows:
        manage = row["manage_url"].rsplit("/", 1)[-1]
        unsubscribe = row["unsubscribe_url"].rstrip("/").rsplit("/", 1)[-1]
        with app.app_context():
            assert tokens.load(tokens.Purpose.MANAGE, manage) == {
                "c": row["subscriber_id"],
                "v": versions[row["subscriber_id"]],
            }
            assert tokens.load(tokens.Purpose.UNSUBSCRIBE, unsubscribe) == {
                "c": row["subscriber_id"],
                "t": topic_id,
            }


@pytest.mark.parametrize(
    "payload",
    [
        {"c": "0b6f1c8e-3d2a-4f57-9a41-7c5e2d9b8f03", "t": 3},
        {"c": 'é-ü " \\ \u2028', "t": None},
        {"c": "abc", "v": 12},
    ],
)
def test_the_signer_and_minter_make_the_same_token_as_make(ctx, payload):
    with freeze_time(MOMENT):
        for purpose in (tokens.Purpose.MANAGE, tokens.Purpose.UNSUBSCRIBE):
            expected = tokens.make(purpose, payload)
            compact = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
            assert tokens.signer(purpose)(compact) == expected
            assert tokens.minter(purpose)(payload) == expected
            assert tokens.load(purpose, expected) == payload


def test_a_payload_make_would_compress_is_signed_uncompressed_and_still_loads(ctx):
    """itsdangerous compresses a payload when that saves bytes (a real id never does)."""
    payload = {"c": "00000000-0000-0000-0000-000000000001", "t": 3}
    with freeze_time(MOMENT):
        assert tokens.make(tokens.Purpose.UNSUBSCRIBE, payload).startswith(".")
        token = tokens.signer(tokens.Purpose.UNSUBSCRIBE)(
            b'{"c":"00000000-0000-0000-0000-000000000001","t":3}'
        )
        assert not token.startswith(".")
        assert tokens.load(tokens.Purpose.UNSUBSCRIBE, token) == payload

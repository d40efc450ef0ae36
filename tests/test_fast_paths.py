"""The busiest writes take fast paths; each writes the rows the plain statements write.

A confirmation and leaving (the one-click unsubscribe, "unsubscribe from everything") run as
one or two statements with data-modifying CTEs on PostgreSQL (``leaving.uses_ctes``), and on
SQLite as one statement per table without SQLAlchemy's per-execution work
(``services.prepared``). Each test here does the same thing to two people on the same
database, one with the fast path and one without, and compares every row either left in every
table that either writes, with only what must differ taken out (ids, public ids, addresses,
Message-IDs, the moments themselves). A column one path fills and the other does not, a
missing ledger entry or a feed entry too many fails here.
"""

from __future__ import annotations

from typing import Any

import pytest
from builders import request_directly, seed_topics
from sqlalchemy import select

from preference_center import suppression
from preference_center.extensions import db
from preference_center.models import (
    ConsentEvent,
    Contact,
    OutboxMessage,
    SignupRequest,
    SubscriberChange,
    Subscription,
    SuppressionReason,
    Topic,
)
from preference_center.services import leaving, prepared, subscriptions


@pytest.fixture
def app_config() -> dict[str, Any]:
    # A second request for an address within the day is throttled (C2); these tests make one.
    return {"CONFIRM_EMAIL_INTERVAL": 0}


CLIENT = subscriptions.Client(ip="192.0.2.44", user_agent="Mozilla/5.0 (compare)")
#: Columns that differ between two people by nature, not by path: replaced by whether set.
VOLATILE = {
    "id", "contact_id", "request_id", "public_id", "subscriber_id", "email", "email_display",
    "to_address", "message_id", "digest", "manage_version",
}  # fmt: skip


def _plain(row: Any, public_id: str) -> dict[str, Any]:
    """A row's columns, with what differs between two people reduced to whether it is set."""
    values = {}
    for column in row.__table__.columns:
        value = getattr(row, column.key)
        if column.key in VOLATILE or column.key.endswith("_at"):
            values[column.key] = value is not None
        elif column.key == "context" and isinstance(value, dict):
            # The person's public id, or a request's (the confirmation email's link).
            values[column.key] = {
                k: "me" if v == public_id else bool(v) if k == "request" else v
                for k, v in value.items()
            }
        else:
            values[column.key] = value
    return values


def _state(email: str) -> dict[str, Any]:
    """Every row a confirmation or leaving writes, of one person, in a stable order."""
    contact = db.session.scalar(select(Contact).where(Contact.email == email))
    assert contact is not None

    def rows(model: Any, *where: Any, order: Any) -> list[dict[str, Any]]:
        found = db.session.scalars(select(model).where(*where).order_by(*order)).all()
        return [_plain(row, contact.public_id) for row in found]

    return {
        "contact": _plain(contact, contact.public_id),
        "subscriptions": rows(
            Subscription, Subscription.contact_id == contact.id, order=[Subscription.topic_id]
        ),
        "ledger": rows(
            ConsentEvent,
            ConsentEvent.contact_id == contact.id,
            order=[ConsentEvent.id],
        ),
        "requests": rows(
            SignupRequest, SignupRequest.contact_id == contact.id, order=[SignupRequest.id]
        ),
        "outbox": rows(
            OutboxMessage, OutboxMessage.contact_id == contact.id, order=[OutboxMessage.id]
        ),
        "feed": rows(
            SubscriberChange,
            SubscriberChange.subscriber_id == contact.public_id,
            order=[SubscriberChange.id],
        ),
        "suppressed": suppression.find(email) is not None,
    }


def _both_ways(
    app: Any, monkeypatch: pytest.MonkeyPatch, act: Any, prepare: Any = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``act(email)`` for one person on the fast path and for another without; both states."""
    states = []
    for email, fast in (("fast@example.org", True), ("plain@example.org", False)):
        if prepare is not None:
            prepare(email)
        with monkeypatch.context() as patch:
            if not fast:
                patch.setattr(leaving, "uses_ctes", lambda connection: False)
                patch.setattr(prepared, "ENABLED", False)
            with app.app_context():
                act(email)
                db.session.remove()
        with app.app_context():
            states.append(_state(email))
            db.session.remove()
    return states[0], states[1]


def _pending_id(email: str) -> str:
    return db.session.scalar(
        select(SignupRequest.public_id)
        .join(Contact)
        .where(Contact.email == email, SignupRequest.status == "pending")
        .order_by(SignupRequest.id.desc())
    )


def _confirm(email: str) -> None:
    result = subscriptions.confirm(_pending_id(email), CLIENT)
    assert result.newly_confirmed


def test_a_confirmation_writes_the_same_rows_both_ways(app, monkeypatch):
    """Two topics, a first name, and a suppression that the confirmation lifts (C11)."""
    seed_topics(app)

    def prepare(email: str) -> None:
        with app.app_context():
            suppression.add(email, SuppressionReason.ERASED)
            db.session.commit()
        outcome = request_directly(
            app, email, slugs=("newsletter", "events"), language="fr", first_name="Élise"
        )
        assert outcome is subscriptions.Outcome.EMAILED

    fast, plain = _both_ways(app, monkeypatch, _confirm, prepare)
    assert fast == plain
    assert not fast["suppressed"]
    assert len(fast["subscriptions"]) == 2
    assert [e["action"].value for e in fast["ledger"]] == ["requested"] * 2 + ["confirmed"] * 2
    assert fast["contact"]["first_name"] == "Élise"
    assert [m["template"] for m in fast["outbox"]] == ["confirm", "welcome"]


def test_a_confirmation_after_an_unsubscribe_updates_the_rows_in_place_both_ways(app, monkeypatch):
    """Subscribing again: the subscription row is updated (version + 1), not added."""
    seed_topics(app)

    def prepare(email: str) -> None:
        assert request_directly(app, email) is subscriptions.Outcome.EMAILED
        with app.app_context():
            _confirm(email)
            contact = db.session.scalar(select(Contact).where(Contact.email == email))
            subscriptions.unsubscribe_all(contact.id, channel="web", client=CLIENT)
            db.session.remove()
        outcome = request_directly(app, email, slugs=("newsletter", "events"))
        assert outcome is subscriptions.Outcome.EMAILED

    fast, plain = _both_ways(app, monkeypatch, _confirm, prepare)
    assert fast == plain
    newsletter = fast["subscriptions"][0]
    assert (newsletter["status"].value, newsletter["version"]) == ("subscribed", 3)
    assert newsletter["unsubscribed_at"] is False


def test_a_confirmation_skips_a_topic_that_no_longer_exists_both_ways(app, monkeypatch):
    """A request naming a topic id that is gone subscribes to the others, both ways."""
    seed_topics(app)

    def prepare(email: str) -> None:
        assert request_directly(app, email) is subscriptions.Outcome.EMAILED
        with app.app_context():
            request = db.session.scalar(
                select(SignupRequest).join(Contact).where(Contact.email == email)
            )
            request.topic_ids = [*request.topic_ids, 987_654]
            db.session.commit()

    fast, plain = _both_ways(app, monkeypatch, _confirm, prepare)
    assert fast == plain
    with app.app_context():
        newsletter = db.session.scalar(select(Topic.id).where(Topic.slug == "newsletter"))
    assert [s["topic_id"] for s in fast["subscriptions"]] == [newsletter]


def _subscribed(app: Any, email: str) -> None:
    """Confirmed to two topics, with a second request still pending."""
    assert request_directly(app, email, slugs=("newsletter", "events")) is (
        subscriptions.Outcome.EMAILED
    )
    with app.app_context():
        _confirm(email)
        db.session.remove()
    request_directly(app, email, slugs=("product-news",))


def _contact_id(email: str) -> int:
    return db.session.scalar(select(Contact.id).where(Contact.email == email))


def test_leaving_everything_writes_the_same_rows_both_ways(app, monkeypatch):
    seed_topics(app)

    def leave(email: str) -> None:
        assert subscriptions.unsubscribe_all(_contact_id(email), channel="web", client=CLIENT) == 2

    fast, plain = _both_ways(app, monkeypatch, leave, lambda e: _subscribed(app, e))
    assert fast == plain
    assert {s["status"].value for s in fast["subscriptions"]} == {"unsubscribed"}
    assert [r["status"].value for r in fast["requests"]] == ["confirmed", "cancelled"]
    assert [e["action"].value for e in fast["ledger"]][-2:] == ["withdrawn"] * 2
    assert [f["kind"].value for f in fast["feed"]][-2:] == ["unsubscribed"] * 2


def test_leaving_one_topic_by_link_writes_the_same_rows_both_ways(app, monkeypatch):
    """The one-click link of one topic: that topic only, and the pending request stays."""
    seed_topics(app)

    def leave(email: str) -> None:
        public_id = db.session.scalar(select(Contact.public_id).where(Contact.email == email))
        events = db.session.scalar(select(Topic.id).where(Topic.slug == "events"))
        leaver = leaving.unsubscribe_by_link(
            public_id, channel="one-click", client=CLIENT, topic_ids=[events]
        )
        assert leaver is not None and leaver.topics_left == 1

    fast, plain = _both_ways(app, monkeypatch, leave, lambda e: _subscribed(app, e))
    assert fast == plain
    assert [s["status"].value for s in fast["subscriptions"]] == [
        "subscribed",
        "unsubscribed",
    ]
    assert [r["status"].value for r in fast["requests"]] == ["confirmed", "pending"]


def test_leaving_again_changes_nothing_but_cancels_pending_requests_both_ways(app, monkeypatch):
    """Nothing left to leave: no ledger entry, no feed entry, the version stays (B2)."""
    seed_topics(app)

    def prepare(email: str) -> None:
        _subscribed(app, email)
        with app.app_context():
            subscriptions.unsubscribe_all(_contact_id(email), channel="web", client=CLIENT)
            db.session.remove()
        request_directly(app, email, slugs=("events",))

    def leave(email: str) -> None:
        assert subscriptions.unsubscribe_all(_contact_id(email), channel="web", client=CLIENT) == 0

    fast, plain = _both_ways(app, monkeypatch, leave, prepare)
    assert fast == plain
    assert fast["requests"][-1]["status"].value == "cancelled"
    assert [e["action"].value for e in fast["ledger"]].count("withdrawn") == 2


def test_a_prepared_statement_fails_as_sqlalchemy_would(app):
    """A constraint broken on the fast path raises SQLAlchemy's IntegrityError, and the
    transaction rolls back as after any other failed statement."""
    from sqlalchemy.exc import IntegrityError

    from preference_center.services import outbox_rows

    row = {
        "message_id": "<same@prefs.example.be>",
        "template": "test",
        "category": "transactional",
        "to_address": "someone@example.org",
        "to_name": None,
        "language": "nl",
        "context": {},
        "contact_id": None,
    }
    with app.app_context():
        outbox_rows._INSERT.execute(db.session.connection(), row)
        with pytest.raises(IntegrityError):
            outbox_rows._INSERT.execute(db.session.connection(), row)
        db.session.rollback()
        assert db.session.scalar(select(OutboxMessage.id)) is None


def test_saving_the_preference_page_writes_the_same_rows_both_ways(app, monkeypatch):
    """A save that joins a topic at a frequency, leaves one, and changes name and language."""
    from datetime import timedelta

    from preference_center.models import utcnow
    from preference_center.services import choices, consent, preferences

    seed_topics(app)

    def save(email: str) -> None:
        contact = db.session.scalar(select(Contact).where(Contact.email == email))
        link = preferences.contact_for_link(preferences.manage_payload(contact))
        saved = choices.update_preferences(
            link.id,
            expected_version=link.prefs_version,
            subscribed={"newsletter": None, "events": "monthly"},
            language="fr",
            first_name="  Anaïs ",
            paused_until=(utcnow() + timedelta(days=30)).date(),
            consent_text_id=consent.current("fr").id,
            client=CLIENT,
        )
        assert (saved.language, saved.prefs_version) == ("fr", link.prefs_version + 1)

    def prepare(email: str) -> None:
        outcome = request_directly(app, email, slugs=("newsletter", "product-news"))
        assert outcome is subscriptions.Outcome.EMAILED
        with app.app_context():
            _confirm(email)
            db.session.remove()

    fast, plain = _both_ways(app, monkeypatch, save, prepare)
    assert fast == plain
    assert fast["contact"]["first_name"] == "Anaïs"
    assert [(s["status"].value, s["frequency"]) for s in fast["subscriptions"]] == [
        ("subscribed", None),
        ("subscribed", "monthly"),
        ("unsubscribed", None),
    ]

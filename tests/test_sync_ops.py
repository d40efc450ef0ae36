"""Operating the sync: lag check (L3), reconciliation (L6), cursor order under load (F5)."""

from __future__ import annotations

import json
import random
import threading
from datetime import timedelta

import pytest
from builders import request_directly, seed_topics
from freezegun import freeze_time
from sqlalchemy import create_engine, select, text
from sync_support import CLIENT, bearer, confirmed, contact_id, new_token, read_all, read_feed

from preference_center.extensions import db
from preference_center.models import Contact, Subscription, SubscriptionStatus, Topic, utcnow
from preference_center.services import changes, preferences, subscriptions

#: Several writers at once, as in production: SQLite has one writer by design. Without
#: TEST_DATABASE_URL these skip with the reason (and fail under REQUIRE_POSTGRES=1).
POSTGRES_ONLY = pytest.mark.parametrize("backend", ["postgresql"])


@pytest.fixture(autouse=True)
def topics(app):
    seed_topics(app)


# --- L3: the lag check ----------------------------------------------------------------------


def test_l3_sync_status_fails_when_a_removal_waited_longer_than_the_threshold(app, client, runner):
    secret = new_token(app)
    confirmed(app, "jan@example.be")
    _, cursor = read_all(client, secret)
    read_feed(client, secret, cursor)  # the consumer is in step
    assert runner.invoke(args=["sync", "status"]).exit_code == 0
    with app.app_context():
        subscriptions.unsubscribe_all(contact_id(app, "jan@example.be"), channel="t", client=CLIENT)
    fresh = runner.invoke(args=["sync", "status", "--json"])
    assert fresh.exit_code == 0
    [consumer] = json.loads(fresh.output)["consumers"]
    assert (consumer["pending_removals"], consumer["late"]) == (1, False)
    with freeze_time(utcnow() + timedelta(hours=25)):
        late = runner.invoke(args=["sync", "status"])
        assert late.exit_code == 1 and "LATE" in late.output and "mailing-list" in late.output
        health = client.get("/api/v1/sync/status", headers=bearer(secret))
        assert health.status_code == 503 and health.get_json()["ok"] is False
        # The consumer reads the removal and asks for more: in step again.
        items, cursor = read_all(client, secret, cursor)
        assert [i["type"] for i in items] == ["unsubscribed"]
        read_feed(client, secret, cursor)
        assert runner.invoke(args=["sync", "status"]).exit_code == 0
        assert client.get("/api/v1/sync/status", headers=bearer(secret)).status_code == 200


def test_l3_the_admin_sees_the_lag_on_the_sync_page(app, client):
    from test_admin import make_user, sign_in  # the admin tests' own helpers

    new_token(app)
    confirmed(app, "jan@example.be")
    with app.app_context():
        subscriptions.unsubscribe_all(contact_id(app, "jan@example.be"), channel="t", client=CLIENT)
    make_user(app, "admin@example.be", "admin")
    sign_in(client, "admin@example.be")
    with freeze_time(utcnow() + timedelta(hours=30)):
        page = client.get("/admin/sync/", headers={"Accept-Language": "nl"}).get_data(as_text=True)
    assert "mailing-list" in page and "48 uur" in page


# --- L6: reconciliation -----------------------------------------------------------------------


def test_l6_reconciliation_lists_addresses_the_list_holds_but_we_removed(app, runner, tmp_path):
    confirmed(app, "keep@example.be")
    confirmed(app, "left@example.be")
    confirmed(app, "erased@example.be")
    request_directly(app, "pending@example.be")
    with app.app_context():
        subscriptions.unsubscribe_all(
            contact_id(app, "left@example.be"), channel="t", client=CLIENT
        )
        preferences.erase(contact_id(app, "erased@example.be"), CLIENT)
    export = tmp_path / "members_export.csv"  # Mailchimp's export columns
    export.write_text(
        "Email Address,First Name,Last Name\n"
        "keep@example.be,K,\n"
        "LEFT@example.be,L,\n"
        "erased@example.be,E,\n"
        "pending@example.be,P,\n"
        "stranger@example.be,S,\n",
        encoding="utf-8",
    )
    result = runner.invoke(args=["sync", "reconcile", str(export), "--json"])
    assert result.exit_code == 1, result.output
    findings = {f["email"]: f["reason"] for f in json.loads(result.output)["findings"]}
    assert findings == {
        "left@example.be": "unsubscribed",
        "erased@example.be": "erased",
        "pending@example.be": "never-confirmed",
        "stranger@example.be": "unknown",
    }
    clean = tmp_path / "clean.csv"
    clean.write_text("Email Address\nkeep@example.be\n", encoding="utf-8")
    assert runner.invoke(args=["sync", "reconcile", str(clean)]).exit_code == 0
    unreadable = tmp_path / "photo.csv"
    unreadable.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    refused = runner.invoke(args=["sync", "reconcile", str(unreadable)])
    assert refused.exit_code == 2 and "cannot read" in refused.output


# --- F5: cursors under concurrent writers -------------------------------------------------------


@POSTGRES_ONLY
def test_f5_a_later_entry_never_becomes_visible_before_an_earlier_one(app, client, database_url):
    secret = new_token(app)
    confirmed(app, "jan@example.be")
    _, cursor = read_all(client, secret)
    # Writer A is inside its commit: it holds the feed lock and has inserted its entry.
    engine = create_engine(database_url)
    slow = engine.connect()
    slow.begin()
    slow.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": changes.FEED_LOCK_KEY})
    slow.execute(
        text(
            "INSERT INTO subscriber_change (kind, subscriber_id, topic_id, occurred_at) "
            "SELECT 'updated', public_id, NULL, now() FROM contact"
        )
    )
    # Writer B (an unsubscribe) starts later and must wait for A's commit to insert.
    done = threading.Event()

    def unsubscribe() -> None:
        with app.app_context():
            subscriptions.unsubscribe_all(
                contact_id(app, "jan@example.be"), channel="t", client=CLIENT
            )
        done.set()

    worker = threading.Thread(target=unsubscribe)
    worker.start()
    assert not done.wait(1.0), "B committed its entry while A held the lock"
    assert read_feed(client, secret, cursor)["items"] == [], "neither is visible yet"
    slow.commit()
    worker.join(10)
    assert done.is_set()
    items, _ = read_all(client, secret, cursor)
    assert [i["type"] for i in items] == ["updated", "unsubscribed"], "A before B, as committed"
    slow.close()
    engine.dispose()


@POSTGRES_ONLY
def test_f5_a_consumer_that_snapshots_then_follows_the_feed_ends_with_our_exact_list(app, client):
    """The issue's consumer test: snapshot, then follow the feed while people come and go."""
    secret = new_token(app)
    for n in range(20):
        confirmed(app, f"m{n:02d}@example.be")
    snapshot = client.get("/api/v1/subscribers?topic=newsletter", headers=bearer(secret))
    members = {
        row["subscriber_id"]: row["email"]
        for row in map(json.loads, snapshot.get_data(as_text=True).splitlines())
    }
    cursor = snapshot.headers["X-Feed-Cursor"]
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for n in range(15):
                action = rng.choice(["subscribe", "unsubscribe", "erase"])
                if action == "subscribe":
                    confirmed(app, f"new{seed}-{n}@example.be")
                    continue
                with app.app_context():
                    ids = db.session.scalars(
                        select(Contact.id)
                        .join(Subscription)
                        .where(Subscription.status == SubscriptionStatus.SUBSCRIBED)
                    ).all()
                    db.session.remove()
                    if not ids:
                        continue
                    target = rng.choice(ids)
                    if action == "unsubscribe":
                        subscriptions.unsubscribe_all(target, channel="t", client=CLIENT)
                    else:
                        preferences.erase(target, CLIENT)
                    db.session.remove()
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    def apply(items: list[dict]) -> None:
        for item in items:
            if item["topic"] not in ("newsletter", None):
                continue
            member = item["subscriber_id"]
            if item["type"] in ("unsubscribed", "erased", "bounced"):
                members.pop(member, None)
            elif item["topic"] or member in members:  # a profile update of a member
                members[member] = item["email"]

    writers = [threading.Thread(target=churn, args=(seed,)) for seed in range(3)]
    for writer in writers:
        writer.start()
    while any(w.is_alive() for w in writers):
        items, cursor = read_all(client, secret, cursor, limit=7)
        apply(items)
    for writer in writers:
        writer.join()
    assert not errors, errors
    items, cursor = read_all(client, secret, cursor, limit=7)
    apply(items)
    stop.set()
    with app.app_context():
        ours = dict(
            db.session.execute(
                select(Contact.public_id, Contact.email)
                .join(Subscription)
                .join(Topic)
                .where(
                    Topic.slug == "newsletter", Subscription.status == SubscriptionStatus.SUBSCRIBED
                )
            ).all()
        )
    assert members == ours

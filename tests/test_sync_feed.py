"""The change feed and the snapshot export (issue: export and sync): L1, L2, L4, L5, F5."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from builders import request_directly, seed_topics
from freezegun import freeze_time
from sqlalchemy import func, select
from sync_support import CLIENT, bearer, confirmed, contact_id, new_token, read_all, read_feed

from preference_center import tokens
from preference_center.extensions import db
from preference_center.models import ApiToken, AuditEntry, SubscriberChange, utcnow
from preference_center.services import choices, consent, feed, preferences, retention, subscriptions


@pytest.fixture(autouse=True)
def topics(app):
    seed_topics(app)


# --- L1: authentication -------------------------------------------------------------------


def test_l1_no_token_wrong_token_or_revoked_token_get_401(app, client, runner):
    secret = new_token(app)
    no_header = client.get("/api/v1/changes")
    assert no_header.status_code == 401
    assert no_header.headers["WWW-Authenticate"].startswith("Bearer")
    assert no_header.get_json()["error"]["status"] == 401
    assert client.get("/api/v1/changes", headers=bearer(secret + "x")).status_code == 401
    assert client.get("/api/v1/changes", headers={"Authorization": secret}).status_code == 401
    assert client.get("/api/v1/changes", headers=bearer(secret)).status_code == 200
    result = runner.invoke(args=["api-tokens", "revoke", "mailing-list"])
    assert result.exit_code == 0, result.output
    assert client.get("/api/v1/changes", headers=bearer(secret)).status_code == 401


def test_l1_a_token_in_the_query_string_is_refused_even_with_the_right_header(app, client):
    secret = new_token(app)
    for name in ("token", "api_key", "access_token"):
        response = client.get(f"/api/v1/changes?{name}={secret}", headers=bearer(secret))
        assert response.status_code == 400
        assert "Authorization" in response.get_json()["error"]["message"]
    assert client.get(f"/api/v1/subscribers?topic=newsletter&token={secret}").status_code == 400


def test_l1_errors_are_translated(app, client):
    response = client.get("/api/v1/changes", headers={"Accept-Language": "nl-BE"})
    assert response.status_code == 401
    message = response.get_json()["error"]["message"]
    assert "API-token" in message and "valid" not in message


def test_l1_only_a_hash_is_stored_the_cli_prints_the_token_last_and_every_use_is_audited(
    app, client, runner
):
    result = runner.invoke(args=["api-tokens", "create", "brevo", "--topics", "newsletter"])
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert secret.startswith("pcapi_") and len(secret) > 40
    with app.app_context():
        token = db.session.scalar(select(ApiToken).where(ApiToken.name == "brevo"))
        stored = " ".join(str(v) for v in vars(token).values())
        assert secret not in stored and secret[8:] not in stored
        assert token.last_used_at is None
    client.get("/api/v1/changes", headers=bearer(secret))
    client.get("/api/v1/changes", headers=bearer(secret))
    with app.app_context():
        uses = db.session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "api.changes")
        )
        assert uses == 2
        assert db.session.scalar(select(ApiToken.last_used_at)) is not None
    listing = runner.invoke(args=["api-tokens", "list"])
    assert "brevo" in listing.output and secret not in listing.output


def test_l1_a_token_scoped_to_topics_sees_only_those(app, client):
    confirmed(app, "jan@example.be", slugs=("newsletter",))
    confirmed(app, "els@example.be", slugs=("events",))
    secret = new_token(app, topics=["events"])
    items, _ = read_all(client, secret)
    assert {i["email"] for i in items} == {"els@example.be"}
    assert (
        client.get("/api/v1/subscribers?topic=newsletter", headers=bearer(secret)).status_code
        == 403
    )
    assert client.get("/api/v1/subscribers?topic=events", headers=bearer(secret)).status_code == 200


# --- the feed -----------------------------------------------------------------------------


def test_the_feed_carries_additions_updates_and_removals_in_order_with_signed_links(app, client):
    secret = new_token(app)
    subscriber = confirmed(app, "jan@example.be", first_name="Jan")
    with app.app_context():
        subscriptions.unsubscribe_all(
            contact_id(app, "jan@example.be"), channel="test", client=CLIENT
        )
    items, cursor = read_all(client, secret)
    assert [(i["type"], i["topic"]) for i in items] == [
        ("subscribed", "newsletter"),
        ("unsubscribed", "newsletter"),
    ]
    added = items[0]
    assert added["subscriber_id"] == subscriber
    assert (added["email"], added["first_name"], added["language"]) == (
        "jan@example.be",
        "Jan",
        "nl",
    )
    assert added["confirmed_at"].endswith("Z")
    manage_token = added["manage_url"].rsplit("/", 1)[-1]
    with app.app_context():
        assert tokens.load(tokens.Purpose.MANAGE, manage_token)["c"] == subscriber
    one_click = added["unsubscribe_url"].removeprefix("https://prefs.example.be")
    assert client.get(one_click).status_code == 200  # the link works as in any email
    # Nothing new after the cursor; the same cursor gives the same answer.
    assert read_feed(client, secret, cursor)["items"] == []
    assert read_feed(client, secret, cursor)["cursor"] == cursor


def test_cursors_are_opaque_and_bad_ones_get_a_clear_400(app, client):
    secret = new_token(app)
    confirmed(app, "jan@example.be")
    page = read_feed(client, secret)
    assert page["cursor"].isascii() and not page["cursor"].isdigit()
    for bad in ("12", "abc", "x" * 65, feed.encode_cursor(3)[:-2] + "!!"):
        response = client.get(f"/api/v1/changes?after={bad}", headers=bearer(secret))
        assert response.status_code == 400, bad
        assert response.get_json()["error"]["field"] == "after"
    for limit in ("0", "-1", "abc", "5001"):
        response = client.get(f"/api/v1/changes?limit={limit}", headers=bearer(secret))
        assert response.status_code == 400


def test_pages_never_skip_or_repeat_and_has_more_says_when_to_ask_again(app, client):
    secret = new_token(app)
    for n in range(7):
        confirmed(app, f"p{n}@example.be")
    items, _ = read_all(client, secret, limit=3)
    assert [i["email"] for i in items] == [f"p{n}@example.be" for n in range(7)]
    assert len({i["cursor"] for i in items}) == 7


def test_profile_changes_and_address_changes_reach_the_list_as_updates(app, client):
    secret = new_token(app)
    confirmed(app, "jan@example.be")
    _, cursor = read_all(client, secret)
    with app.app_context():
        cid = contact_id(app, "jan@example.be")
        contact = db.session.get(preferences.Contact, cid)
        choices.update_preferences(
            cid,
            expected_version=contact.prefs_version,
            subscribed={"newsletter": None},
            language="fr",
            first_name="Jean",
            paused_until=None,
            consent_text_id=consent.current("fr").id,
            client=CLIENT,
        )
    items, _ = read_all(client, secret, cursor)
    assert [(i["type"], i["topic"], i["language"], i["first_name"]) for i in items] == [
        ("updated", None, "fr", "Jean")
    ]


# --- L2: only confirmed people, removals included --------------------------------------------


def test_l2_a_pending_or_never_confirmed_address_never_leaves_the_service(app, client):
    secret = new_token(app)
    request_directly(app, "pending@example.be")
    with app.app_context():
        # Unsubscribing and erasing a never-confirmed person writes nothing the list sees.
        subscriptions.unsubscribe_all(
            contact_id(app, "pending@example.be"), channel="t", client=CLIENT
        )
        request_directly(app, "pending2@example.be")
        preferences.erase(contact_id(app, "pending2@example.be"), CLIENT)
    items, _ = read_all(client, secret)
    assert items == []
    body = client.get("/api/v1/subscribers?topic=newsletter", headers=bearer(secret))
    assert body.get_data(as_text=True) == ""
    assert "pending" not in json.dumps(items)


def test_l2_erasure_reaches_the_list_as_a_tombstone_with_only_id_and_address(app, client):
    secret = new_token(app)
    subscriber = confirmed(app, "jan@example.be", first_name="Jan")
    with app.app_context():
        preferences.erase(contact_id(app, "jan@example.be"), CLIENT)
    items, _ = read_all(client, secret)
    assert [i["type"] for i in items] == ["erased"], "the subscribed item is gone with the data"
    tombstone = items[0]
    assert tombstone["subscriber_id"] == subscriber and tombstone["email"] == "jan@example.be"
    assert "first_name" not in tombstone and "Jan" not in json.dumps(tombstone)


def test_l2_bounced_out_addresses_are_removed_through_the_feed(app, client, smtp):
    """A real SMTP 550, OUTBOX_HARD_BOUNCE_LIMIT times: the list learns and the snapshot drops it."""
    from conftest import run_worker
    from test_outbox import queue

    secret = new_token(app)
    confirmed(app, "gone@example.be")
    confirmed(app, "stays@example.be")
    run_worker(app)  # the welcome emails
    smtp.handler.rcpt_replies["gone@example.be"] = "550 5.1.1 No such user"
    for _ in range(app.config["OUTBOX_HARD_BOUNCE_LIMIT"]):
        queue(app, "gone@example.be", contact_id=contact_id(app, "gone@example.be"))
        run_worker(app)
    items, _ = read_all(client, secret)
    assert [(i["type"], i["email"]) for i in items] == [
        ("subscribed", "gone@example.be"),
        ("subscribed", "stays@example.be"),
        ("bounced", "gone@example.be"),
    ]
    assert items[-1]["topic"] == "newsletter"
    snapshot = client.get("/api/v1/subscribers?topic=newsletter", headers=bearer(secret))
    assert [json.loads(line)["email"] for line in snapshot.get_data(as_text=True).splitlines()] == [
        "stays@example.be"
    ]


def test_erased_addresses_leave_tombstones_only_once_every_consumer_read_past_them(app, client):
    secret = new_token(app)
    confirmed(app, "jan@example.be")
    with app.app_context():
        preferences.erase(contact_id(app, "jan@example.be"), CLIENT)
    later = utcnow() + timedelta(days=31)
    with app.app_context(), freeze_time(later):
        assert retention.purge()["erasure_tombstones"] == 0, "the consumer has not read it yet"
    _, cursor = read_all(client, secret)
    read_feed(client, secret, cursor)  # asking for the page after it acknowledges it
    with app.app_context(), freeze_time(later):
        assert retention.purge()["erasure_tombstones"] == 1
        assert (
            db.session.scalar(
                select(SubscriberChange.email).where(SubscriberChange.email.is_not(None))
            )
            is None
        )
    items, _ = read_all(client, secret)
    assert items[-1]["type"] == "erased" and items[-1]["email"] is None


# --- snapshot (L4, L5) ----------------------------------------------------------------------


def test_l4_the_snapshot_streams_every_confirmed_subscriber_in_a_stable_order(app, client):
    secret = new_token(app)
    emails = [f"s{n:03d}@example.be" for n in range(30)]
    for email in emails:
        confirmed(app, email)
    request_directly(app, "pending@example.be")
    response = client.get("/api/v1/subscribers?topic=newsletter", headers=bearer(secret))
    assert response.status_code == 200 and response.is_streamed
    assert response.mimetype == "application/x-ndjson"
    rows = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert [r["email"] for r in rows] == emails
    assert all(r["manage_url"].startswith("https://prefs.example.be/") for r in rows)
    again = client.get("/api/v1/subscribers?topic=newsletter", headers=bearer(secret))
    assert (
        again.get_data() == response.get_data()
        or [json.loads(line)["email"] for line in again.get_data(as_text=True).splitlines()]
        == emails
    )
    # The snapshot's cursor is the feed's position: following from it gives nothing old.
    cursor = response.headers["X-Feed-Cursor"]
    assert read_feed(client, secret, cursor)["items"] == []
    whole = client.get("/api/v1/subscribers?topic=newsletter&format=json", headers=bearer(secret))
    document = whole.get_json()
    assert document["cursor"] == cursor and len(document["subscribers"]) == 30


def test_l4_bad_snapshot_requests_get_clear_errors(app, client):
    secret = new_token(app)
    assert client.get("/api/v1/subscribers", headers=bearer(secret)).status_code == 404
    assert client.get("/api/v1/subscribers?topic=nope", headers=bearer(secret)).status_code == 404
    response = client.get("/api/v1/subscribers?topic=newsletter&format=xml", headers=bearer(secret))
    assert response.status_code == 400 and "ndjson" in response.get_json()["error"]["message"]


def test_l5_the_csv_has_mailchimp_columns_and_neutralised_formulas(app, client):
    secret = new_token(app)
    confirmed(app, "evil@example.be", first_name='=HYPERLINK("http://x")')
    confirmed(app, "plain@example.be", first_name="Anne-Marie")
    response = client.get("/api/v1/subscribers?topic=newsletter&format=csv", headers=bearer(secret))
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert list(rows[0])[:4] == ["Email Address", "First Name", "Last Name", "Language"]
    assert rows[0]["First Name"].startswith("'=")
    assert rows[1]["First Name"] == "Anne-Marie"
    # NDJSON needs no neutralising, only correct escaping of what people type.
    ndjson = client.get("/api/v1/subscribers?topic=newsletter", headers=bearer(secret))
    names = [json.loads(line)["first_name"] for line in ndjson.get_data(as_text=True).splitlines()]
    assert names == ['=HYPERLINK("http://x")', "Anne-Marie"]


def test_minted_tokens_are_exactly_what_load_accepts(ctx):
    make = tokens.minter(tokens.Purpose.UNSUBSCRIBE)
    for payload in ({"c": "abc", "t": None}, {"c": "é-ü", "t": 12}):
        token = make(payload)
        assert tokens.load(tokens.Purpose.UNSUBSCRIBE, token) == payload
        with pytest.raises(tokens.TokenInvalid):
            tokens.load(tokens.Purpose.MANAGE, token)  # purpose-bound like any other
    old = make({"c": "abc", "t": None})
    later = utcnow() + timedelta(seconds=tokens.max_age(tokens.Purpose.UNSUBSCRIBE) + 300)
    with freeze_time(later), pytest.raises(tokens.TokenExpired):
        tokens.load(tokens.Purpose.UNSUBSCRIBE, old)

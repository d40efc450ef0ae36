"""Webhooks: the change feed pushed to a real HTTP receiver, signed, in order, with retries."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from builders import hidden, press, seed_topics
from conftest import free_port
from freezegun import freeze_time
from sqlalchemy import select
from sync_support import CLIENT, confirmed, contact_id

from preference_center.extensions import db
from preference_center.models import DeliveryStatus, WebhookDelivery, utcnow
from preference_center.services import feed, preferences, subscriptions, webhooks

SECRET = "a-shared-secret-of-some-length"


@pytest.fixture
def app_config() -> dict[str, Any]:
    return {"WEBHOOK_ALLOW_HTTP": True, "WEBHOOK_TIMEOUT": 2.0, "WEBHOOK_MAX_ATTEMPTS": 3}


@pytest.fixture(autouse=True)
def topics(app):
    seed_topics(app)


class Receiver:
    """A real HTTP server that records each POST and answers with the statuses it is given."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 204
                self.send_response(status)
                if status in (301, 302, 307):
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/preferences"

    def items(self, index: int = -1) -> list[dict]:
        return json.loads(self.posts[index][1])["items"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def add_hook(app, url: str, topics: list[int] | None = None) -> int:
    with app.app_context():
        hook_id = webhooks.add(url, SECRET, topics, actor="pytest").id
        db.session.remove()
        return hook_id


def dispatch(app) -> int:
    with app.app_context():
        sent = webhooks.dispatch()
        db.session.remove()
        return sent


def deliveries(app) -> list[tuple[DeliveryStatus, int]]:
    with app.app_context():
        rows = db.session.execute(
            select(WebhookDelivery.status, WebhookDelivery.attempts).order_by(WebhookDelivery.id)
        ).all()
        db.session.remove()
        return [tuple(r) for r in rows]


def test_the_feed_is_pushed_signed_and_in_order(app, receiver, runner):
    result = runner.invoke(args=["webhooks", "add", receiver.url, "--secret", SECRET])
    assert result.exit_code == 0, result.output
    confirmed(app, "jan@example.be")
    with app.app_context():
        subscriptions.unsubscribe_all(contact_id(app, "jan@example.be"), channel="t", client=CLIENT)
    # The outbox worker pushes webhooks between its batches.
    assert runner.invoke(args=["outbox", "work", "--once"]).exit_code == 0
    assert len(receiver.posts) == 1
    headers, body = receiver.posts[0]
    assert webhooks.verify(SECRET, headers[webhooks.SIGNATURE_HEADER], body)
    assert not webhooks.verify("another-secret-entirely", headers[webhooks.SIGNATURE_HEADER], body)
    assert not webhooks.verify(SECRET, headers[webhooks.SIGNATURE_HEADER], body + b" ")
    assert [i["type"] for i in receiver.items()] == ["subscribed", "unsubscribed"]
    assert receiver.items()[0]["email"] == "jan@example.be"
    assert dispatch(app) == 0 and len(receiver.posts) == 1, "nothing new, nothing sent"
    confirmed(app, "els@example.be")
    assert dispatch(app) == 1
    assert [i["email"] for i in receiver.items()] == ["els@example.be"]


def test_a_signature_older_than_five_minutes_is_refused_by_verify(app):
    body = b'{"items":[]}'
    header = webhooks.sign(SECRET, int(utcnow().timestamp()) - 301, body)
    assert not webhooks.verify(SECRET, header, body)
    assert not webhooks.verify(SECRET, "garbage", body)


def test_only_https_receivers_unless_allowed(app, runner):
    app.config["WEBHOOK_ALLOW_HTTP"] = False
    refused = runner.invoke(args=["webhooks", "add", "http://example.org/hook", "--secret", SECRET])
    assert refused.exit_code == 2 and "https" in refused.output
    short = runner.invoke(args=["webhooks", "add", "https://example.org/h", "--secret", "short"])
    assert short.exit_code == 2 and "16" in short.output
    creds = runner.invoke(
        args=["webhooks", "add", "https://user:pw@example.org/h", "--secret", SECRET]
    )
    assert creds.exit_code == 2


def test_failures_back_off_then_die_and_later_changes_wait_for_the_admin(app, receiver, runner):
    hook = add_hook(app, receiver.url)
    confirmed(app, "jan@example.be")
    receiver.statuses = [500, 503, 500]
    start = utcnow()
    assert dispatch(app) == 0
    assert deliveries(app) == [(DeliveryStatus.PENDING, 1)]
    assert dispatch(app) == 0 and len(receiver.posts) == 1, "the retry waits for its time"
    with freeze_time(start + timedelta(seconds=31)):
        dispatch(app)
    with freeze_time(start + timedelta(seconds=31 + 61)):
        dispatch(app)
    assert len(receiver.posts) == 3
    assert deliveries(app) == [(DeliveryStatus.DEAD, 3)]
    confirmed(app, "later@example.be")
    with freeze_time(start + timedelta(days=1)):
        assert dispatch(app) == 0 and len(receiver.posts) == 3, "nothing passes a dead delivery"
    listing = runner.invoke(args=["webhooks", "list", "--json"])
    [row] = json.loads(listing.output)
    assert row["dead_deliveries"] == 1 and row["last_error"] == "HTTP 500"
    assert runner.invoke(args=["webhooks", "retry", str(hook)]).exit_code == 0
    assert dispatch(app) == 2
    assert [i["email"] for i in receiver.items(-2)] == ["jan@example.be"]
    assert [i["email"] for i in receiver.items(-1)] == ["later@example.be"]


def test_a_redirect_is_a_failure_never_followed(app, receiver):
    add_hook(app, receiver.url)
    confirmed(app, "jan@example.be")
    receiver.statuses = [302]
    assert dispatch(app) == 0
    with app.app_context():
        assert db.session.scalar(select(WebhookDelivery.last_error)) == "HTTP 302"
    assert len(receiver.posts) == 1


def test_an_unreachable_receiver_is_retried(app):
    add_hook(app, f"http://127.0.0.1:{free_port()}/nobody-listens")
    confirmed(app, "jan@example.be")
    assert dispatch(app) == 0
    with app.app_context():
        error = db.session.scalar(select(WebhookDelivery.last_error))
    assert "Connection refused" in error or "URLError" in error


def test_data_erased_before_the_retry_is_not_pushed(app, receiver):
    add_hook(app, receiver.url)
    confirmed(app, "jan@example.be")
    receiver.statuses = [500]
    dispatch(app)
    with app.app_context():
        preferences.erase(contact_id(app, "jan@example.be"), CLIENT)
    with freeze_time(utcnow() + timedelta(seconds=31)):
        dispatch(app)
    pushed = b"".join(body for _, body in receiver.posts[1:])
    assert b"jan@example.be" not in pushed.split(b'"erased"')[0]
    assert [i["type"] for i in receiver.items(1)] == [], "the retried page holds no data now"
    assert [i["type"] for i in receiver.items(-1)] == ["erased"]


def test_replay_sends_the_feed_again_from_a_cursor(app, receiver, runner):
    hook = add_hook(app, receiver.url)
    confirmed(app, "a@example.be")
    confirmed(app, "b@example.be")
    dispatch(app)
    first = receiver.items()
    assert [i["email"] for i in first] == ["a@example.be", "b@example.be"]
    result = runner.invoke(args=["webhooks", "replay", str(hook), "--from", first[0]["cursor"]])
    assert result.exit_code == 0, result.output
    dispatch(app)
    assert [i["email"] for i in receiver.items()] == ["b@example.be"]
    bad = runner.invoke(args=["webhooks", "replay", str(hook), "--from", "nonsense"])
    assert bad.exit_code == 2


def test_a_webhook_scoped_to_a_topic_gets_only_that_topic(app, receiver):
    with app.app_context():
        from preference_center.services import api_tokens

        events = api_tokens.topic_ids_for(["events"])
        db.session.remove()
    add_hook(app, receiver.url, events)
    confirmed(app, "news@example.be", slugs=("newsletter",))
    confirmed(app, "event@example.be", slugs=("events",))
    dispatch(app)
    assert [i["email"] for i in receiver.items()] == ["event@example.be"]


def test_the_admin_adds_a_webhook_sees_a_dead_one_and_retries_it(app, client, receiver):
    from test_admin import make_user, sign_in

    make_user(app, "admin@example.be", "admin")
    sign_in(client, "admin@example.be")
    page = client.get("/admin/sync/").get_data(as_text=True)
    token = hidden(page, "csrf_token")

    def post(path: str, **data: str) -> Any:
        return press(client, path, token, **data)

    bad = post("/admin/sync/", url="ftp://x", secret=SECRET)
    assert bad.status_code == 400 and "https://host/path" in bad.get_data(as_text=True)
    added = post("/admin/sync/", url=receiver.url, secret=SECRET)
    assert added.status_code == 303
    confirmed(app, "jan@example.be")
    receiver.statuses = [500, 500, 500]
    start = utcnow()
    for seconds in (0, 31, 92):
        with freeze_time(start + timedelta(seconds=seconds)):
            dispatch(app)
    page = client.get("/admin/sync/", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert receiver.url in page and "échoué" in page
    hook_id = webhooks_ids(app)[0]
    retried = post(f"/admin/sync/webhooks/{hook_id}/retry")
    assert retried.status_code == 303
    assert dispatch(app) == 1
    replayed = post(f"/admin/sync/webhooks/{hook_id}/replay", cursor="")
    assert replayed.status_code == 303
    assert dispatch(app) == 1 and len(receiver.items()) == 1
    removed = post(f"/admin/sync/webhooks/{hook_id}/remove")
    assert removed.status_code == 303 and webhooks_ids(app) == []


def webhooks_ids(app) -> list[int]:
    with app.app_context():
        ids = [h.id for h in webhooks.listing()]
        db.session.remove()
        return ids


def test_feed_cursor_helpers_round_trip():
    for n in (0, 1, 10**12):
        assert feed.decode_cursor(feed.encode_cursor(n)) == n

"""The next message of a batch is rendered while the current one is sent (prefetch.py)."""

from __future__ import annotations

import threading

from sqlalchemy import update

from preference_center import addresses
from preference_center.extensions import db
from preference_center.mail import messages, outbox
from preference_center.models import OutboxMessage, OutboxStatus, utcnow


def queue(app, address, template="test", category="transactional", context=None):
    with app.app_context():
        row = outbox.enqueue(
            template,
            addresses.parse(address),
            "nl",
            context={"address": address} if context is None else context,
            category=category,
        )
        db.session.commit()
        return row.id


def status(app, row_id):
    with app.app_context():
        return db.session.get(OutboxMessage, row_id).status


def drain(app):
    with app.app_context():
        return outbox.Worker(batch_size=50).run(once=True)


def rendering_threads(monkeypatch):
    """Record (recipient, thread name) for every message rendered."""
    seen = []
    real_render = messages.render

    def render(row):
        seen.append((row.to_address, threading.current_thread().name))
        return real_render(row)

    monkeypatch.setattr(messages, "render", render)
    return seen


def test_messages_go_out_in_claim_order_each_with_its_own_content(app, smtp, monkeypatch):
    seen = rendering_threads(monkeypatch)
    for i in range(20):
        queue(app, f"r{i}@example.be")
    assert drain(app).sent == 20
    recipients = [rcpts[0] for _, rcpts in smtp.handler.envelopes]
    assert recipients == [f"r{i}@example.be" for i in range(20)]
    for message, recipient in zip(smtp.messages, recipients, strict=True):
        assert recipient in message.get_body(("plain",)).get_content()
    assert any(name.startswith("outbox-render") for _, name in seen), "rendered ahead"
    assert len(seen) == 20, "each message rendered once"


def test_a_message_skipped_while_rendered_ahead_is_cancelled_and_the_rest_goes_out(app, smtp):
    first = queue(app, "a@example.be")
    gone = queue(app, "b@example.be", template="welcome", context={"contact": "no-such-contact"})
    last = queue(app, "c@example.be")
    report = drain(app)
    assert (report.sent, report.cancelled) == (2, 1)
    assert status(app, gone) is OutboxStatus.CANCELLED
    assert status(app, first) is status(app, last) is OutboxStatus.SENT
    assert [rcpts[0] for _, rcpts in smtp.handler.envelopes] == ["a@example.be", "c@example.be"]


def test_capped_categories_are_not_rendered_ahead(app, smtp, monkeypatch):
    # Their turn may hold them back (C10), so nothing of theirs runs before the cap check.
    seen = rendering_threads(monkeypatch)
    for i in range(5):
        queue(app, f"c{i}@example.be", category="confirmation")
    assert drain(app).sent == 5
    assert {name for _, name in seen} == {threading.current_thread().name}


def test_a_server_gone_mid_batch_leaves_the_rest_for_later_nothing_lost(app, smtp):
    ids = [queue(app, f"m{i}@example.be") for i in range(4)]
    replies = iter(["250 OK", "421 4.3.2 Service shutting down"])
    original = smtp.handler.handle_DATA

    async def second_fails(server, session, envelope):
        reply = next(replies, None)
        if reply and reply.startswith("421"):
            return reply
        return await original(server, session, envelope)

    smtp.handler.handle_DATA = second_fails
    report = drain(app)
    assert (report.sent, report.retried) == (1, 3)
    assert [status(app, i) for i in ids] == [OutboxStatus.SENT] + [OutboxStatus.PENDING] * 3

    smtp.handler.handle_DATA = original
    with app.app_context():  # the backoff has passed
        db.session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
        db.session.commit()
    assert drain(app).sent == 3
    recipients = [rcpts[0] for _, rcpts in smtp.handler.envelopes]
    assert sorted(recipients) == [f"m{i}@example.be" for i in range(4)], "each exactly once"

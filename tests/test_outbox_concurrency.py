"""OUTBOX_CONCURRENCY / `flask outbox work --concurrency N`: several sender loops per worker.

Run on SQLite and PostgreSQL like every test that takes ``app``: no row is sent twice and none
is lost with N > 1, and a killed worker repeats at most one message per loop (catalogue E4).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from sqlalchemy import func, select, update

from preference_center import addresses
from preference_center.extensions import db
from preference_center.mail import outbox
from preference_center.models import OutboxMessage, OutboxStatus, utcnow


def queue_many(app, total, prefix="c"):
    with app.app_context():
        for i in range(total):
            outbox.enqueue(
                "test",
                addresses.parse(f"{prefix}{i}@example.be"),
                ("nl", "fr", "en")[i % 3],
                context={"address": f"{prefix}{i}@example.be"},
            )
        db.session.commit()


def sent_rows(app):
    with app.app_context():
        return db.session.scalar(
            select(func.count()).where(OutboxMessage.status == OutboxStatus.SENT)
        )


def record_sessions(smtp):
    """Keep every SMTP session that delivered a message (the objects, so ids stay unique)."""
    sessions = []
    original = smtp.handler.handle_DATA

    async def record(server, session, envelope):
        sessions.append(session)
        return await original(server, session, envelope)

    smtp.handler.handle_DATA = record
    return sessions


def test_concurrent_loops_send_every_message_exactly_once(app, smtp):
    total = 150
    queue_many(app, total)
    sessions = record_sessions(smtp)
    with app.app_context():
        report = outbox.Worker(batch_size=10, concurrency=4).run(once=True)
    assert report.sent == total
    ids = [m["Message-ID"] for m in smtp.messages]
    assert len(ids) == total and len(set(ids)) == total, "no message twice"
    recipients = {rcpt for _, rcpts in smtp.handler.envelopes for rcpt in rcpts}
    assert recipients == {f"c{i}@example.be" for i in range(total)}, "none lost"
    assert sent_rows(app) == total
    assert len({id(session) for session in sessions}) > 1, "more than one connection sent"


def test_two_concurrent_workers_never_send_the_same_message_twice(app, smtp):
    total = 120
    queue_many(app, total)

    def work():
        with app.app_context():
            outbox.Worker(batch_size=5, concurrency=3).run(once=True)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    ids = [m["Message-ID"] for m in smtp.messages]
    assert len(ids) == total and len(set(ids)) == total
    assert sent_rows(app) == total


def test_a_failing_loop_stops_the_others_and_its_message_goes_out_again(app, smtp, monkeypatch):
    total = 60
    queue_many(app, total)
    real_finish = outbox._finish
    marked = []

    def crash_on_the_tenth_sent_mark(row_id, worker, **values):
        if values.get("status") is OutboxStatus.SENT:
            marked.append(row_id)
            if len(marked) == 10:
                raise SystemExit("worker killed")
        real_finish(row_id, worker, **values)

    monkeypatch.setattr(outbox, "_finish", crash_on_the_tenth_sent_mark)
    with app.app_context(), pytest.raises(SystemExit):
        outbox.Worker(batch_size=5, concurrency=3).run(once=True)
    monkeypatch.setattr(outbox, "_finish", real_finish)

    with app.app_context():  # every lease runs out
        db.session.execute(update(OutboxMessage).values(locked_until=utcnow()))
        db.session.commit()
        outbox.Worker(batch_size=50).run(once=True)
    by_recipient = Counter(rcpt for _, rcpts in smtp.handler.envelopes for rcpt in rcpts)
    assert set(by_recipient) == {f"c{i}@example.be" for i in range(total)}, "nothing lost"
    assert sum(by_recipient.values()) - total == 1, "only the crashed loop's message again"
    assert sent_rows(app) == total


def test_e4_a_killed_concurrent_worker_repeats_at_most_one_message(
    app, smtp, database_url, tmp_path
):
    """kill -9 on `flask outbox work --concurrency 3`, then another worker finishes the job."""
    total, concurrency = 60, 3
    queue_many(app, total, prefix="k")
    original = smtp.handler.handle_DATA

    async def slow(server, session, envelope):
        time.sleep(0.02)  # slow enough to kill the worker mid-batch
        return await original(server, session, envelope)

    smtp.handler.handle_DATA = slow
    env = {
        **os.environ,
        "FLASK_APP": "preference_center",
        "FLASK_SECRET_KEY": "test-secret-key-not-for-production",
        "FLASK_SQLALCHEMY_DATABASE_URI": database_url,
        "FLASK_SERVER_NAME": "prefs.example.be",
        "FLASK_MAIL_SERVER": "127.0.0.1",
        "FLASK_MAIL_PORT": str(smtp.port),
        "FLASK_MAIL_DEFAULT_SENDER": "news@prefs.example.be",
    }
    env.pop("FLASK_DEBUG", None)
    command = [sys.executable, "-m", "flask", "outbox", "work", "--batch-size", "10"]
    process = subprocess.Popen(
        [*command, "--concurrency", str(concurrency)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while len(smtp.messages) < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    delivered_before_kill = len(smtp.messages)
    assert 10 <= delivered_before_kill < total, process.stderr.read().decode()

    smtp.handler.handle_DATA = original
    with app.app_context():  # the killed worker's leases expire
        db.session.execute(update(OutboxMessage).values(locked_until=utcnow()))
        db.session.commit()
        outbox.Worker(batch_size=100).run(once=True)
    recipients = [rcpt for _, rcpts in smtp.handler.envelopes for rcpt in rcpts]
    assert set(recipients) == {f"k{i}@example.be" for i in range(total)}, "nothing lost"
    assert len(recipients) - total <= 1, "at most one message again, whatever the concurrency"
    by_id = Counter(m["Message-ID"] for m in smtp.messages)
    assert len(by_id) == total, "a repeated message keeps its Message-ID"
    assert sent_rows(app) == total


def test_the_side_jobs_run_in_one_loop_only(app, smtp):
    queue_many(app, 30)
    threads = set()
    with app.app_context():
        worker = outbox.Worker(batch_size=5, concurrency=3)
        worker.side_jobs.append(lambda: threads.add(threading.current_thread().name))
        assert worker.run(once=True).sent == 30
    assert threads == {"outbox-0"}


def test_the_cli_takes_a_concurrency_and_refuses_zero(app, smtp, runner):
    queue_many(app, 12)
    result = runner.invoke(args=["outbox", "work", "--once", "--concurrency", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[-1]) == {"sent": 12, "retried": 0, "failed": 0}
    refused = runner.invoke(args=["outbox", "work", "--once", "--concurrency", "0"])
    assert refused.exit_code == 2


def test_the_setting_is_read_from_the_configuration(app):
    app.config["OUTBOX_CONCURRENCY"] = 3
    with app.app_context():
        assert outbox.Worker().concurrency == 3
        assert outbox.Worker(concurrency=1).concurrency == 1
        app.config["OUTBOX_CONCURRENCY"] = 0
        with pytest.raises(ValueError):
            outbox.Worker()


# --- OUTBOX_ASYNC_COMMIT -----------------------------------------------------------------


def test_async_commit_marks_every_row_sent_and_leaves_the_pool_as_it_was(
    app, smtp, backend, monkeypatch
):
    app.config["OUTBOX_ASYNC_COMMIT"] = True
    queue_many(app, 12)
    seen = []
    real_deliver = outbox._deliver

    def record(rows, worker, connection, lease_ends, sent_marks, **options):
        if backend == "postgresql":
            setting = sent_marks.exec_driver_sql("SHOW synchronous_commit").scalar()
            seen.append((sent_marks.connection.dbapi_connection, setting))
        return real_deliver(rows, worker, connection, lease_ends, sent_marks, **options)

    monkeypatch.setattr(outbox, "_deliver", record)
    with app.app_context():
        assert outbox.Worker(batch_size=5).run(once=True).sent == 12
    assert sent_rows(app) == 12
    if backend == "postgresql":
        assert {setting for _, setting in seen} == {"off"}
        for dbapi_connection, _ in seen:  # back in the pool with the server default
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SHOW synchronous_commit")
                assert cursor.fetchone()[0] == "on"
            dbapi_connection.rollback()  # leave no transaction open in the pool

"""The outbox and its worker, against a real SMTP server (catalogue rows E1-E4, E6, E8-E10, F6)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po
from conftest import start_smtp
from sqlalchemy import func, select, update

from preference_center import addresses, create_app
from preference_center.config import PROJECT_ROOT
from preference_center.extensions import db
from preference_center.mail import messages, outbox
from preference_center.models import Contact, ContactSource, OutboxMessage, OutboxStatus, utcnow
from preference_center.services import system


def queue(app, address="jan@example.be", language="en", contact_id=None, **kwargs):
    with app.app_context():
        if contact_id is not None:
            kwargs["contact"] = db.session.get(Contact, contact_id)
        row = outbox.enqueue(
            "test",
            addresses.parse(address),
            language,
            context={"address": address},
            **kwargs,
        )
        db.session.commit()
        return row.id


def row(app, row_id):
    with app.app_context():
        found = db.session.get(OutboxMessage, row_id)
        db.session.expunge(found)
        return found


def make_due(app):
    """Pretend the backoff delay has passed, without waiting for it."""
    with app.app_context():
        db.session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
        db.session.commit()


def drain(app, **kwargs):
    with app.app_context():
        return outbox.Worker(**kwargs).run(once=True)


# --- delivery ------------------------------------------------------------------------------


def test_a_queued_message_is_rendered_in_the_recipients_language_and_delivered(app, smtp):
    queue(app, "Marie.Dubois@Example.be", "fr", to_name="Marie Dubois")
    report = drain(app)
    assert (report.sent, report.failed, report.retried) == (1, 0, 0)
    [message] = smtp.messages
    assert smtp.handler.envelopes[0][1] == ["marie.dubois@example.be"]
    assert message["Content-Language"] == "fr"
    assert message["To"].addresses[0].display_name == "Marie Dubois"
    assert message.get_body(("plain",)).get_content()
    assert message.get_body(("html",)) is not None


def test_one_connection_is_reused_for_a_whole_batch(app, smtp):
    sessions = []
    original = smtp.handler.handle_DATA

    async def record_session(server, session, envelope):
        sessions.append(id(session))
        return await original(server, session, envelope)

    smtp.handler.handle_DATA = record_session
    for i in range(5):
        queue(app, f"reader{i}@example.be")
    assert drain(app).sent == 5
    assert len(set(sessions)) == 1


def test_mail_max_emails_still_reconnects_after_that_many_messages(app, smtp):
    sessions = []  # the objects themselves: an id() may be reused once one is freed
    original = smtp.handler.handle_DATA

    async def record_session(server, session, envelope):
        sessions.append(session)
        return await original(server, session, envelope)

    smtp.handler.handle_DATA = record_session
    app.extensions["mail"].max_emails = 2
    for i in range(5):
        queue(app, f"reader{i}@example.be")
    assert drain(app).sent == 5
    assert len({id(session) for session in sessions}) == 3
    assert smtp.handler.envelopes[0][0] == "news@prefs.example.be"


def test_flask_mail_record_messages_still_sees_what_the_worker_sends(app, smtp):
    queue(app, "reader@example.be", "nl")
    with app.app_context(), app.extensions["mail"].record_messages() as recorded:
        assert outbox.Worker().run(once=True).sent == 1
    assert [m.recipients for m in recorded] == [["reader@example.be"]]


def test_the_message_id_is_stable_and_in_the_senders_domain(app, smtp):
    row_id = queue(app)
    drain(app)
    assert smtp.messages[0]["Message-ID"] == row(app, row_id).message_id
    assert row(app, row_id).message_id.endswith("@prefs.example.be>")


def test_idn_domains_are_sent_in_idna_2008_form(app, smtp):
    # Python's own "idna" codec (IDNA 2003, used by Flask-Mail) would turn faß.de into fass.de,
    # a different domain (catalogue D5).
    queue(app, "info@faß.de")
    drain(app)
    assert smtp.handler.envelopes[0][1] == ["info@xn--fa-hia.de"]


def test_the_test_email_links_to_the_configured_public_address_over_https(app, smtp):
    # Catalogue J3: links use SERVER_NAME and https even though the worker has no request.
    queue(app)
    drain(app)
    text = smtp.messages[0].get_body(("plain",)).get_content()
    assert "https://prefs.example.be/" in text


# --- failures ------------------------------------------------------------------------------


def test_e1_smtp_down_keeps_the_message_and_retries_with_backoff(app, smtp):
    with app.app_context():
        row_id = system.send_test_message("jan@example.be", "nl").id
    smtp.stop()  # connection refused from now on
    report = drain(app)
    assert report.retried == 1 and report.sent == 0
    waiting = row(app, row_id)
    assert waiting.status is OutboxStatus.PENDING
    assert waiting.attempts == 1
    assert waiting.last_error
    assert waiting.next_attempt_at - utcnow() > timedelta(seconds=45)  # backoff, not a loop
    assert drain(app).claimed == 0, "a row in backoff must not be retried at once"

    restarted = start_smtp()
    try:
        app.extensions["mail"].port = restarted.port
        make_due(app)
        assert drain(app).sent == 1
        assert len(restarted.messages) == 1
    finally:
        restarted.stop()
    assert row(app, row_id).status is OutboxStatus.SENT


def test_e1_backoff_grows_exponentially_and_gives_up_after_the_retry_period(app, smtp, caplog):
    smtp.stop()
    row_id = queue(app)
    delays = []
    for _ in range(6):
        drain(app)
        delays.append((row(app, row_id).next_attempt_at - utcnow()).total_seconds())
        make_due(app)
    assert delays[1] > delays[0] * 1.5 and delays[2] > delays[1] * 1.5
    assert max(delays) <= app.config["OUTBOX_RETRY_MAX"] * 1.1
    assert any("still undelivered" in r.message for r in caplog.records if r.levelname == "ERROR")

    with app.app_context():
        old = utcnow() - timedelta(seconds=app.config["OUTBOX_RETRY_PERIOD"] + 1)
        db.session.execute(update(OutboxMessage).values(created_at=old))
        db.session.commit()
    drain(app)
    assert row(app, row_id).status is OutboxStatus.FAILED


def test_e2_a_silent_smtp_server_times_out_and_the_message_waits(app, blackhole):
    app.extensions["mail"].port = blackhole.port
    app.config["MAIL_TIMEOUT"] = 0.5
    row_id = queue(app)
    started = time.monotonic()
    report = drain(app)
    assert time.monotonic() - started < 5
    assert report.retried == 1
    assert "timed out" in row(app, row_id).last_error.lower()


def test_e3_a_5xx_fails_one_message_a_4xx_retries_and_the_batch_goes_on(app, smtp):
    smtp.handler.rcpt_replies["gone@example.be"] = "550 5.1.1 No such user"
    smtp.handler.rcpt_replies["busy@example.be"] = "451 4.3.0 Try again later"
    gone = queue(app, "gone@example.be")
    busy = queue(app, "busy@example.be")
    fine = queue(app, "fine@example.be")
    report = drain(app)
    assert (report.sent, report.failed, report.retried) == (1, 1, 1)
    assert row(app, gone).status is OutboxStatus.FAILED
    assert row(app, gone).last_error.startswith("550")
    assert row(app, busy).status is OutboxStatus.PENDING
    assert row(app, fine).status is OutboxStatus.SENT

    make_due(app)
    assert drain(app).claimed == 1, "the permanent failure is never retried"


def test_e3_repeated_hard_bounces_stop_further_mail_to_that_contact(app, smtp):
    smtp.handler.rcpt_replies["gone@example.be"] = "550 5.1.1 No such user"
    with app.app_context():
        contact = Contact(
            email="gone@example.be",
            email_display="gone@example.be",
            source=ContactSource.FORM,
        )
        db.session.add(contact)
        db.session.commit()
        contact_id = contact.id
    limit = app.config["OUTBOX_HARD_BOUNCE_LIMIT"]
    for _ in range(limit):
        queue(app, "gone@example.be", contact_id=contact_id)
        drain(app)
    smtp.handler.rcpt_replies.clear()
    queue(app, "gone@example.be", contact_id=contact_id)
    drain(app)
    assert smtp.messages == [], "no more mail after the hard bounce limit"
    with app.app_context():
        assert db.session.get(Contact, contact_id).hard_bounces == limit


def test_e3_a_421_reply_means_reconnect_later(app, smtp):
    smtp.handler.data_reply = "421 4.3.2 Service shutting down"
    row_id = queue(app)
    assert drain(app).retried == 1
    assert row(app, row_id).status is OutboxStatus.PENDING


def test_e4_a_crash_after_smtp_accepted_resends_with_the_same_message_id(app, smtp, monkeypatch):
    row_id = queue(app)
    real_finish = outbox._finish

    def crash_when_marking_sent(row_id, worker, **values):
        if values.get("status") is OutboxStatus.SENT:
            raise SystemExit("worker killed")
        real_finish(row_id, worker, **values)

    monkeypatch.setattr(outbox, "_finish", crash_when_marking_sent)
    with pytest.raises(SystemExit):
        drain(app)
    monkeypatch.setattr(outbox, "_finish", real_finish)
    assert len(smtp.messages) == 1
    assert drain(app).claimed == 0, "the dead worker's lease still holds the row"

    with app.app_context():  # the lease runs out
        db.session.execute(update(OutboxMessage).values(locked_until=utcnow()))
        db.session.commit()
    assert drain(app).sent == 1
    assert [m["Message-ID"] for m in smtp.messages] == [row(app, row_id).message_id] * 2
    assert row(app, row_id).status is OutboxStatus.SENT


def test_two_workers_never_send_the_same_message_twice(app, smtp):
    total = 120
    # This test is about claims, not timeouts: on a machine loaded enough for an SMTP reply to
    # take the tests' 2 s, a timed-out message is rightly retried later (at-least-once) and
    # `once` stops before it is due, which made this test fail for the wrong reason.
    app.config["MAIL_TIMEOUT"] = 30.0
    reports = []
    with app.app_context():
        for i in range(total):
            outbox.enqueue(
                "test", addresses.parse(f"r{i}@example.be"), "en", context={"address": "x"}
            )
        db.session.commit()

    def work():
        with app.app_context():
            reports.append(outbox.Worker(batch_size=10).run(once=True))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [r.errors for r in reports] == [[], []]
    ids = [m["Message-ID"] for m in smtp.messages]
    assert len(ids) == total
    assert len(set(ids)) == total
    with app.app_context():
        sent = db.session.scalar(
            select(func.count()).where(OutboxMessage.status == OutboxStatus.SENT)
        )
    assert sent == total


def test_a_worker_killed_mid_batch_loses_nothing(app, smtp, database_url, tmp_path):
    """kill -9 on a real `flask outbox work` process, then another worker finishes the job."""
    total = 30
    for i in range(total):
        queue(app, f"k{i}@example.be")
    original = smtp.handler.handle_DATA

    async def slow(server, session, envelope):
        time.sleep(0.05)  # slow enough to kill the worker mid-batch
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
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "outbox", "work", "--batch-size", "100"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while len(smtp.messages) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    delivered_before_kill = len(smtp.messages)
    assert 5 <= delivered_before_kill < total, process.stderr.read().decode()

    smtp.handler.handle_DATA = original
    with app.app_context():  # the killed worker's lease expires
        db.session.execute(update(OutboxMessage).values(locked_until=utcnow()))
        db.session.commit()
    drain(app)
    recipients = [rcpt for _, rcpts in smtp.handler.envelopes for rcpt in rcpts]
    assert set(recipients) == {f"k{i}@example.be" for i in range(total)}, "nothing lost"
    assert len(recipients) - total <= 1, "at most the message in flight is repeated"


def test_e6_an_smtp_server_with_an_untrusted_certificate_gets_nothing(app, smtp, self_signed_cert):
    cert, key = self_signed_cert
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    tls = start_smtp(tls_context=context, require_starttls=True)
    try:
        app.extensions["mail"].port = tls.port
        app.extensions["mail"].use_tls = True
        row_id = queue(app)
        assert drain(app).retried == 1
        assert tls.messages == []
        assert "certificate" in row(app, row_id).last_error.lower()

        app.config["MAIL_SSL_CA_FILE"] = str(cert)  # trust it explicitly: now it goes out
        make_due(app)
        assert drain(app).sent == 1
        assert len(tls.messages) == 1
    finally:
        tls.stop()


# --- headers -------------------------------------------------------------------------------


def test_e8_a_line_break_in_the_name_never_becomes_a_header(app, smtp):
    queue(app, to_name="Jan\r\nBcc: victim@example.org")
    drain(app)
    [message] = smtp.messages
    assert message["Bcc"] is None
    assert smtp.handler.envelopes[0][1] == ["jan@example.be"]


def test_e8_a_line_break_in_any_extra_header_is_refused_before_sending(app):
    with app.app_context():
        mail = messages.OutboxMail(
            subject="Hello",
            recipients=["jan@example.be"],
            body="Hi",
            sender="news@prefs.example.be",
            to_name=None,
            message_id="<1@prefs.example.be>",
            extra_headers={"List-Unsubscribe": "<https://x.example>\r\nBcc: victim@example.org"},
        )
        assert mail.has_bad_headers()
        with pytest.raises(messages.BadHeaderError):
            mail.as_bytes()


def test_e9_non_ascii_and_very_long_names_are_encoded_and_cut(app, smtp):
    queue(app, "jose@example.be", to_name="José Dupont")
    queue(app, "long@example.be", to_name="Van " + "der " * 80 + "Berghe")
    drain(app)
    by_rcpt = {
        rcpts[0]: m for m, (_, rcpts) in zip(smtp.messages, smtp.handler.envelopes, strict=True)
    }
    assert by_rcpt["jose@example.be"]["To"].addresses[0].display_name == "José Dupont"
    raw = by_rcpt["jose@example.be"].as_bytes()
    assert b"=?utf-8?" in raw.lower(), "RFC 2047 encoded display name"
    long_name = by_rcpt["long@example.be"]["To"].addresses[0].display_name
    assert len(long_name) <= messages.MAX_DISPLAY_NAME
    for line in by_rcpt["long@example.be"].as_bytes().split(b"\n"):
        assert len(line) < 998


# --- languages -----------------------------------------------------------------------------


@pytest.fixture
def half_translated_catalogues(tmp_path):
    """A copy of the catalogues where one Dutch entry is missing."""
    target = tmp_path / "translations"
    shutil.copytree(PROJECT_ROOT / "translations", target)
    po_path = target / "nl" / "LC_MESSAGES" / "messages.po"
    with po_path.open("rb") as handle:
        catalogue = read_po(handle, locale="nl")
    for message in catalogue:
        if message.id == "Hello,":
            message.string = ""
    with po_path.open("wb") as handle:
        write_po(handle, catalogue)
    with po_path.with_suffix(".mo").open("wb") as handle:
        write_mo(handle, catalogue)
    return target


def test_e10_an_incomplete_catalogue_sends_the_whole_email_in_english(
    app, smtp, half_translated_catalogues
):
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(half_translated_catalogues)
    queue(app, language="nl")
    drain(app)
    [message] = smtp.messages
    assert message["Content-Language"] == "en"
    assert message.get_body(("plain",)).get_content().startswith("Hello,")


def test_e10_a_complete_catalogue_is_used(app, smtp):
    queue(app, language="nl")
    drain(app)
    [message] = smtp.messages
    assert message["Content-Language"] == "nl"
    assert not message.get_body(("plain",)).get_content().startswith("Hello,")


# --- concurrency ---------------------------------------------------------------------------


def test_f6_twenty_concurrent_writers_all_succeed(app):
    errors = []

    def write(i):
        try:
            with app.app_context():
                system.send_test_message(f"writer{i}@example.be", "en")
        except Exception as exc:  # the assertion below shows what went wrong
            errors.append(repr(exc))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 20


def test_outbox_status_counts_rows_per_state(app, smtp, runner):
    smtp.handler.rcpt_replies["gone@example.be"] = "550 5.1.1 No such user"
    queue(app, "gone@example.be")
    queue(app, "fine@example.be")
    drain(app)
    queue(app, "later@example.be")
    result = runner.invoke(args=["outbox", "status", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "pending": 1,
        "sent": 1,
        "failed": 1,
        "cancelled": 0,
        "due": 1,
    }


def test_a_fresh_app_does_not_touch_smtp_or_the_database_at_import(tmp_path):
    # Building the app must not open connections: nothing listens on this port.
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "x",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'nothing.sqlite3'}",
            "MAIL_PORT": 9,
        }
    )
    assert app.name == "preference_center"
    assert not Path(tmp_path / "nothing.sqlite3").exists()


def test_rows_claimed_ahead_are_given_back_when_the_worker_stops(app, smtp):
    """The next batch is claimed while the last message of a batch is sent (docs/benchmarks.md);
    a worker that stops right after must not leave that batch leased until its lease expires."""
    ids = [queue(app, f"ahead{i}@example.be") for i in range(8)]
    with app.app_context():
        worker = outbox.Worker(batch_size=3, concurrency=1)

        def stop_after_the_first_batch(report):
            worker.stopping = True

        report = worker.run(once=True, on_batch=stop_after_the_first_batch)
    assert report.sent == 3 and len(smtp.messages) == 3
    with app.app_context():
        rest = db.session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(ids[3:]))).all()
        assert {(r.status, r.locked_by) for r in rest} == {(OutboxStatus.PENDING, None)}
    assert drain(app).sent == 5, "another worker takes them at once"
    assert len(smtp.messages) == 8


def test_the_fast_outbox_insert_writes_the_row_enqueue_writes(app):
    """``services.outbox_rows.queue`` (one Core INSERT, for signup and confirmation) must write
    exactly the row ``outbox.enqueue`` writes through the ORM; only ids, Message-IDs and
    timestamps differ. A column added to one of them and not the other fails here."""
    from sqlalchemy import inspect as sa_inspect

    from preference_center.services import outbox_rows

    name = "Émilie " + "x" * 120  # longer than the column: both cut it the same way
    with app.app_context():
        contact = Contact(
            email="emilie@example.be",
            email_display="emilie@example.be",
            language="fr",
            source=ContactSource.FORM,
        )
        db.session.add(contact)
        db.session.flush()
        orm_row = outbox.enqueue(
            "welcome",
            addresses.parse("emilie@example.be"),
            "fr",
            to_name=name,
            context={"contact": "abc", "topics": [1, 2]},
            contact=contact,
            category="marketing",
        )
        db.session.flush()
        message_id = outbox_rows.queue(
            db.session.connection(),
            "welcome",
            outbox_rows.ascii_address("emilie@example.be"),
            "fr",
            to_name=name,
            context={"contact": "abc", "topics": [1, 2]},
            contact_id=contact.id,
            category="marketing",
        )
        db.session.commit()
        core_row = db.session.scalar(
            select(OutboxMessage).where(OutboxMessage.message_id == message_id)
        )
        ignored = {"id", "message_id", "created_at", "next_attempt_at"}
        columns = [c.key for c in sa_inspect(OutboxMessage).column_attrs if c.key not in ignored]
        assert {c: getattr(core_row, c) for c in columns} == {
            c: getattr(orm_row, c) for c in columns
        }
        assert core_row.message_id.endswith("@prefs.example.be>")
        assert orm_row.message_id.split("@")[1] == core_row.message_id.split("@")[1]

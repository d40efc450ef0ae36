"""The flask commands: each prints what it did, and --json prints it for scripts."""

from __future__ import annotations

import json

from sqlalchemy import select

from preference_center.extensions import db
from preference_center.models import OutboxMessage, Topic

TOPIC = [
    "--name-nl", "Vacatures", "--name-fr", "Offres d’emploi", "--name-en", "Job openings",
    "--description-nl", "Nieuwe vacatures bij ons.", "--purpose", "Recruitment news",
]  # fmt: skip


def test_topics_can_be_added_listed_updated_and_removed(app, runner):
    result = runner.invoke(args=["topics", "add", "jobs", *TOPIC, "--private"])
    assert result.exit_code == 0, result.output
    assert "Added topic jobs" in result.output

    listed = json.loads(runner.invoke(args=["topics", "list", "--json"]).output)
    assert listed == [
        {
            "slug": "jobs", "public": False, "position": 0, "purpose": "Recruitment news",
            "frequencies": [],
            "name_nl": "Vacatures", "name_fr": "Offres d’emploi", "name_en": "Job openings",
            "description_nl": "Nieuwe vacatures bij ons.", "description_fr": "",
            "description_en": "",
        }
    ]  # fmt: skip

    result = runner.invoke(
        args=[
            "topics",
            "update",
            "jobs",
            "--public",
            "--name-en",
            "Jobs",
            "--frequencies",
            "weekly,monthly",
        ]
    )
    assert result.exit_code == 0, result.output
    bad = runner.invoke(args=["topics", "update", "jobs", "--frequencies", "hourly"])
    assert bad.exit_code == 2 and "hourly" in bad.output
    with app.app_context():
        topic = db.session.scalar(select(Topic).where(Topic.slug == "jobs"))
        assert (topic.is_public, topic.name_en, topic.name_nl) == (True, "Jobs", "Vacatures")
        assert topic.frequencies == ["weekly", "monthly"]

    assert runner.invoke(args=["topics", "remove", "jobs"]).exit_code == 0
    assert "No topics yet" in runner.invoke(args=["topics", "list"]).output


def test_a_topic_needs_a_name_in_every_language(runner):
    result = runner.invoke(args=["topics", "add", "jobs", "--name-en", "Jobs"])
    assert result.exit_code == 2
    assert "missing name_nl, name_fr" in result.output


def test_a_topic_slug_is_unique_and_well_formed(runner):
    assert runner.invoke(args=["topics", "add", "jobs", *TOPIC]).exit_code == 0
    again = runner.invoke(args=["topics", "add", "jobs", *TOPIC])
    assert again.exit_code == 2 and "exists already" in again.output
    bad = runner.invoke(args=["topics", "add", "Jobs & more", *TOPIC])
    assert bad.exit_code == 2 and "slug" in bad.output


def test_seeding_loads_three_examples_once(app, runner):
    first = runner.invoke(args=["topics", "seed"])
    assert "Loaded 3 example topics" in first.output
    second = runner.invoke(args=["topics", "seed"])
    assert "nothing loaded" in second.output
    with app.app_context():
        topics = db.session.scalars(select(Topic)).all()
    assert len(topics) == 3
    assert all(t.name_nl and t.name_fr and t.name_en and t.description_fr for t in topics)


def test_send_test_queues_a_message_and_reports_its_id(app, runner, smtp):
    result = runner.invoke(args=["mail", "send-test", "someone@example.org", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["to"] == "s***@example.org"
    with app.app_context():
        row = db.session.get(OutboxMessage, data["id"])
        assert row.message_id == data["message_id"]

    worked = runner.invoke(args=["outbox", "work", "--once", "--json"])
    assert json.loads(worked.output) == {"sent": 1, "retried": 0, "failed": 0}
    assert smtp.messages[0]["Message-ID"] == data["message_id"]


def test_send_test_refuses_an_invalid_address_or_language(runner):
    bad = runner.invoke(args=["mail", "send-test", "not an address"])
    assert bad.exit_code == 2 and "not a usable email address" in bad.output
    bad_language = runner.invoke(args=["mail", "send-test", "a@example.org", "--language", "de"])
    assert bad_language.exit_code == 2


def test_the_development_mailbox_keeps_what_it_receives(tmp_path):
    import smtplib
    from email.message import EmailMessage

    from conftest import free_port

    from preference_center import create_app
    from preference_center.mail import devmailbox

    app = create_app(
        {"DEBUG": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
        instance_path=str(tmp_path / "instance"),
    )
    port = free_port()
    controller = devmailbox.serve(app, "127.0.0.1", port)
    try:
        message = EmailMessage()
        message["Subject"], message["From"], message["To"] = (
            "Hallo",
            "a@example.org",
            "b@example.org",
        )
        message.set_content("Bekijk https://prefs.example.be/confirm/abc")
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            client.send_message(message)
    finally:
        controller.stop()
    [(key, stored)] = devmailbox.messages(app)
    assert stored["Subject"] == "Hallo"
    page = app.test_client().get(f"/dev/mailbox/{key}").get_data(as_text=True)
    assert '<a href="https://prefs.example.be/confirm/abc">' in page

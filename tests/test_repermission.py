"""The permission campaign for imported contacts (catalogue rows H1-H4, G13, G14, F4)."""

from __future__ import annotations

import io
import re
from datetime import date, timedelta
from urllib.parse import urlsplit

import pytest
from builders import click_and_press, hidden, press, seed_topics
from conftest import run_worker
from flask_babel import force_locale
from flask_babel import gettext as _
from freezegun import freeze_time
from sqlalchemy import func, select

from preference_center import suppression
from preference_center.extensions import db
from preference_center.models import (
    AskedMarker,
    ConsentAction,
    ConsentEvent,
    Contact,
    ImportBatch,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
    utcnow,
)
from preference_center.services import imports, repermission, retention, subscriptions

EVENT = imports.Provenance(
    "Horeca Expo Gent", date(2026, 11, 16), imports.CollectedBy.BUSINESS_CARD, "anna@example.be"
)
FILE = (
    "E-mail;Voornaam;Taal\njan@example.be;Jan;nl\nmarie@example.be;Marie;fr\ninfo@example.be;;en\n"
)


@pytest.fixture(autouse=True)
def topics_exist(app):
    seed_topics(app)


def imported(app, content=FILE):
    with app.app_context():
        batch = imports.import_contacts(
            io.BytesIO(content.encode()), filename="expo.csv", provenance=EVENT
        )
        return batch.id


def send(app, batch_id, topics=("newsletter",)):
    with app.app_context():
        return repermission.send(batch_id, list(topics), actor="anna@example.be")


def link(message, path):
    text = message.get_body(("plain",)).get_content()
    return urlsplit(re.search(rf"https://\S+/{path}/\S+", text).group(0)).path


def funnel(app, batch_id):
    with app.app_context():
        return repermission.funnel(batch_id)


def test_h1_the_email_is_neutral_in_the_contacts_language_and_names_the_source(app, smtp):
    batch_id = imported(app)
    assert send(app, batch_id) == 3
    run_worker(app)
    by_address = {
        rcpts[0]: m for m, (_, rcpts) in zip(smtp.messages, smtp.handler.envelopes, strict=True)
    }
    dutch, french = by_address["jan@example.be"], by_address["marie@example.be"]
    assert dutch["Content-Language"] == "nl" and french["Content-Language"] == "fr"
    with app.test_request_context(), force_locale("nl"):
        subject = _("Would you like to receive emails from %(site)s?", site="Preference Center")
    assert dutch["Subject"] == subject
    text = dutch.get_body(("plain",)).get_content()
    assert "Horeca Expo Gent" in text and "2026" in text, "the event and its date (Art. 14(2)(f))"
    assert "Maandelijkse nieuwsbrief" in text
    assert text.count("/confirm/") == 1 and text.count("/never/") == 1
    assert "Preference Center" in text, "who we are"
    assert dutch["List-Unsubscribe"] is None, "not a newsletter: one question, nothing to sell"


def test_h2_one_reminder_only_to_the_undecided_then_the_deadline_purges(app, client, smtp):
    batch_id = imported(app)
    send(app, batch_id)
    run_worker(app)
    jan = next(
        m
        for m, (_, r) in zip(smtp.messages, smtp.handler.envelopes, strict=True)
        if r == ["jan@example.be"]
    )
    assert click_and_press(client, link(jan, "confirm")).status_code == 200
    with freeze_time(utcnow() + timedelta(days=15)), app.app_context():
        assert repermission.remind() == 2
        assert repermission.remind() == 0, "one reminder at most"
    with freeze_time(utcnow() + timedelta(days=31)), app.app_context():
        counts = retention.purge()
    assert counts["unconfirmed_imported_contacts"] == 2
    with app.app_context():
        emails = set(db.session.scalars(select(Contact.email)))
        assert emails == {"jan@example.be"}
        assert db.session.scalar(select(func.count()).select_from(AskedMarker)) == 3, (
            "asked-on markers stay"
        )
    figures = funnel(app, batch_id)
    assert figures["imported"] == 3 and figures["mailed"] == 3 and figures["confirmed"] == 1
    assert figures["purged"] == 2 and figures["delivered"] >= 3


def test_h3_never_contact_me_suppresses_and_erases(app, client, smtp):
    batch_id = imported(app)
    send(app, batch_id)
    run_worker(app)
    marie = next(
        m
        for m, (_, r) in zip(smtp.messages, smtp.handler.envelopes, strict=True)
        if r == ["marie@example.be"]
    )
    path = link(marie, "never")
    page = client.get(path)
    assert page.status_code == 200
    assert press(client, path, hidden(page.get_data(as_text=True), "csrf_token")).status_code == 200
    with app.app_context():
        assert db.session.scalar(select(Contact).where(Contact.email == "marie@example.be")) is None
        entry = suppression.find("marie@example.be")
        assert entry is not None and entry.reason is SuppressionReason.OBJECTED
    assert funnel(app, batch_id)["refused"] == 1
    counts, _ = reimport(app)
    assert counts.get("suppressed") == 1, "a later upload never brings her back (G13)"


def reimport(app):
    with app.app_context():
        batch = imports.import_contacts(
            io.BytesIO(FILE.encode()), filename="again.csv", provenance=EVENT
        )
        return batch.counts, batch.id


def test_h4_the_confirm_page_shows_which_address_is_being_confirmed(app, client, smtp):
    batch_id = imported(app)
    send(app, batch_id)
    run_worker(app)
    jan = next(
        m
        for m, (_, r) in zip(smtp.messages, smtp.handler.envelopes, strict=True)
        if r == ["jan@example.be"]
    )
    page = client.get(link(jan, "confirm")).get_data(as_text=True)
    assert "j***@example.be" in page, "a colleague who got the email forwarded sees whose it is"
    assert click_and_press(client, link(jan, "confirm")).status_code == 200
    with app.app_context():
        contact = db.session.scalar(select(Contact).where(Contact.email == "jan@example.be"))
        assert [s.status for s in contact.subscriptions] == [SubscriptionStatus.SUBSCRIBED]
        confirmed = db.session.scalar(
            select(ConsentEvent).where(ConsentEvent.action == ConsentAction.CONFIRMED)
        )
        batch = db.session.get(ImportBatch, confirmed.import_batch_id)
        assert (batch.event_name, batch.collected_by.value) == ("Horeca Expo Gent", "business-card")


def test_g14_the_same_card_uploaded_again_is_not_asked_twice(app, smtp):
    batch_id = imported(app)
    send(app, batch_id)
    counts, second = reimport(app)
    assert counts == {"asked-recently": 3, "role": 1}
    with app.app_context():
        assert repermission.send(second, ["newsletter"], actor="x") == 0


def test_f4_g13_an_address_that_left_or_was_suppressed_after_the_import_is_not_mailed(app, smtp):
    batch_id = imported(app)
    with app.app_context():
        suppression.add("marie@example.be", SuppressionReason.ERASED)
        jan = db.session.scalar(select(Contact).where(Contact.email == "jan@example.be"))
        topic = db.session.scalar(select(Subscription.topic_id).limit(1))
        del topic
        db.session.commit()
        subscriptions.unsubscribe_all(
            jan.id, channel="test", client=subscriptions.Client(None, None)
        )
    assert send(app, batch_id) == 2
    run_worker(app)
    assert "marie@example.be" not in [r[0] for _, r in smtp.handler.envelopes]


def test_sending_twice_queues_nothing_new(app, smtp):
    batch_id = imported(app)
    assert send(app, batch_id) == 3
    assert send(app, batch_id) == 0


def test_a_campaign_needs_a_topic(app):
    batch_id = imported(app)
    with app.app_context(), pytest.raises(repermission.CampaignError):
        repermission.send(batch_id, [], actor="x")


def test_the_command_line_sends_reminds_and_shows_the_funnel(app, runner, smtp):
    batch_id = imported(app)
    result = runner.invoke(
        args=["repermission", "send", str(batch_id), "--topics", "newsletter,events", "--json"]
    )
    assert result.exit_code == 0 and '"queued": 3' in result.output
    assert "Queued 0 reminders" in runner.invoke(args=["repermission", "remind"]).output
    funnel_output = runner.invoke(args=["repermission", "funnel", str(batch_id), "--json"]).output
    assert '"mailed": 3' in funnel_output


def test_a_batch_never_mailed_is_purged_after_the_deadline_too(app):
    imported(app)
    with freeze_time(utcnow() + timedelta(days=31)), app.app_context():
        assert retention.purge()["unconfirmed_imported_contacts"] == 3


def test_permission_emails_are_throttled_per_hour_in_the_outbox(app, smtp):
    app.config["REPERMISSION_HOURLY_CAP"] = 2
    batch_id = imported(app)
    send(app, batch_id)
    report = run_worker(app)
    assert len(smtp.messages) == 2 and report.held == 1
    with freeze_time(utcnow() + timedelta(hours=1, minutes=10)):
        run_worker(app)
    assert len(smtp.messages) == 3

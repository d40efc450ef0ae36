"""Double opt-in from the form to a confirmed subscriber with proof of consent.

Catalogue rows: A1-A14, B1, B7, B10, C1-C8, C10, C11, E5, F1, F2, F7, K5, K6, K7.
Address rows D1-D9 are in test_addresses.py.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import threading
from datetime import timedelta

import pytest
from builders import (
    click_and_press,
    hidden,
    links,
    post_signup,
    press,
    request_directly,
    seed_topics,
    subscribe,
)
from conftest import run_worker
from flask_babel import force_locale
from flask_babel import gettext as _
from freezegun import freeze_time
from sqlalchemy import func, select, update

from preference_center import addresses, suppression, tokens
from preference_center.extensions import db
from preference_center.logs import scrub
from preference_center.models import (
    ConsentAction,
    ConsentEvent,
    ConsentText,
    Contact,
    OutboxMessage,
    OutboxStatus,
    PurgeLog,
    RequestStatus,
    SignupRequest,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    utcnow,
)
from preference_center.services import consent, retention, subscriptions

ADDRESS = "jan.peeters@example.be"


@pytest.fixture(autouse=True)
def topics_exist(app):
    seed_topics(app)


def count(app, model, *where):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def snapshot(app):
    """Everything a state change would touch: rows per table and their states."""
    with app.app_context():
        return {
            "contacts": db.session.scalar(select(func.count()).select_from(Contact)),
            "requests": sorted(
                (r.public_id, r.status.value) for r in db.session.scalars(select(SignupRequest))
            ),
            "subscriptions": sorted(
                (s.contact_id, s.topic_id, s.status.value)
                for s in db.session.scalars(select(Subscription))
            ),
            "ledger": db.session.scalar(select(func.count()).select_from(ConsentEvent)),
            "outbox": db.session.scalar(select(func.count()).select_from(OutboxMessage)),
        }


def confirmation_links(app, smtp, address=ADDRESS):
    run_worker(app)
    return links(smtp.handler.to(addresses.parse(address).ascii)[-1])


def pending(app, client, smtp, address=ADDRESS, **fields):
    response = post_signup(client, address, **fields)
    assert response.status_code == 200
    return confirmation_links(app, smtp, address)


def translated(app, language, message, **values):
    with app.test_request_context(), force_locale(language):
        return _(message, **values)


def subscription_states(app, address=ADDRESS):
    with app.app_context():
        contact = db.session.scalar(select(Contact).where(Contact.email == address))
        if contact is None:
            return {}
        return {s.topic.slug: s.status for s in contact.subscriptions}


# --- the happy path -------------------------------------------------------------------------


def test_a_person_signs_up_confirms_and_is_subscribed_with_proof(app, client, smtp):
    response = post_signup(
        client, "Jan.Peeters@Example.be", first_name="Jan", topics=["newsletter", "events"]
    )
    assert response.status_code == 200
    assert count(app, Subscription) == 0, "nobody is subscribed before confirming"

    run_worker(app)
    [message] = smtp.messages
    text = message.get_body(("plain",)).get_content()
    assert message["Content-Language"] == "nl"
    assert message["Subject"] == translated(
        app, "nl", "Please confirm your subscription to %(site)s", site="Preference Center"
    )
    assert "J***@example.be" in text and "jan.peeters@example.be" not in text.lower()
    assert "Maandelijkse nieuwsbrief" in text and "Evenementen en webinars" in text
    assert text.count("/confirm/") == 1 and text.count("/not-me/") == 1
    assert "https://prefs.example.be/" in text

    page = client.get(links(message)["confirm"])
    assert page.status_code == 200
    assert "J***@example.be" in page.get_data(as_text=True)
    response = click_and_press(client, links(message)["confirm"])
    assert response.status_code == 200
    assert "Jan" in response.get_data(as_text=True)
    assert subscription_states(app) == {
        "newsletter": SubscriptionStatus.SUBSCRIBED,
        "events": SubscriptionStatus.SUBSCRIBED,
    }
    with app.app_context():
        contact = db.session.scalar(select(Contact).where(Contact.email == ADDRESS))
        assert contact.email_display == "Jan.Peeters@example.be"
        assert (contact.first_name, contact.language) == ("Jan", "nl")


def test_a_requests_topics_are_exactly_its_own_in_display_order(app):
    """topics_of reads a range of ids: the topics between the chosen ones are left out."""
    from preference_center.models import Topic
    from preference_center.services.confirmation import topics_of

    with app.app_context():
        ids = db.session.scalars(select(Topic.id).order_by(Topic.id)).all()
        assert len(ids) >= 3
        chosen = [ids[-1], ids[0]]
        found = topics_of(chosen)
        assert {t.id for t in found} == set(chosen)
        assert found == sorted(found, key=lambda t: (t.position, t.id))
        assert topics_of([]) == [] and topics_of(None) == []


def test_user_typed_fields_other_than_the_first_name_never_reach_the_email(app, client, smtp):
    post_signup(client, ADDRESS, first_name="Jan", source="", website="")
    run_worker(app)
    message = smtp.messages[0]
    for part in ("plain", "html"):
        body = message.get_body((part,)).get_content()
        assert "Jan" in body
        assert ADDRESS not in body, "only the masked address is shown"


def test_a_campaign_url_presets_the_topics_and_records_the_source(app, client, smtp):
    page = client.get("/?topics=events&source=fair-2026").get_data(as_text=True)
    assert "Evenementen" in page or "Events and webinars" in page
    assert "Maandelijkse nieuwsbrief" not in page and "Monthly newsletter" not in page
    response = post_signup(
        client, ADDRESS, query="?topics=events&source=fair-2026", topics=["events"]
    )
    assert response.status_code == 200
    with app.app_context():
        request = db.session.scalar(select(SignupRequest))
        assert request.source_label == "fair-2026"


def test_the_signup_form_has_no_pre_ticked_box(client):
    page = client.get("/").get_data(as_text=True)
    assert "checked" not in page


def test_the_consent_statement_and_its_version_are_shown_in_the_page_language(app, client):
    page = client.get("/?lang=fr").get_data(as_text=True)
    with app.app_context():
        text = consent.current("fr")
    assert text.body in page
    assert hidden(page, "consent_text_id") == str(text.id)


# --- A: tokens and links --------------------------------------------------------------------


def _tamper(token):
    head, dot, tail = token.rpartition(".")
    return head + dot + ("A" if tail[0] != "A" else "B") + tail[1:]


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(_tamper, id="one-character-changed"),
        pytest.param(lambda t: t[: len(t) // 2], id="truncated"),
        pytest.param(lambda t: "x", id="garbage"),
        pytest.param(lambda t: "éèà€", id="non-ascii"),
        pytest.param(
            lambda t: (
                base64.urlsafe_b64encode(b'{"r":"other"}').decode().rstrip("=")
                + "."
                + t.split(".", 1)[1]
            ),
            id="payload-swapped",
        ),
    ],
)
def test_a1_a_tampered_token_shows_a_translated_invalid_page_and_changes_nothing(
    app, client, smtp, mangle, caplog
):
    link = pending(app, client, smtp)["confirm"]
    token = link.rsplit("/", 1)[1]
    before = snapshot(app)
    bad = f"/confirm/{mangle(token)}"
    response = client.get(bad, headers={"Accept-Language": "fr"})
    if response.status_code == 400:
        assert translated(app, "fr", "This link is not valid") in response.get_data(as_text=True)
    else:
        assert response.status_code == 404  # a token with a "/" is no route at all
    csrf_token = hidden(client.get("/").get_data(as_text=True), "csrf_token")
    assert press(client, bad, csrf_token).status_code in (400, 404)
    assert snapshot(app) == before
    assert token not in caplog.text


def test_a2_an_expired_link_offers_a_fresh_link_sent_to_the_same_address(app, client, smtp):
    link = pending(app, client, smtp)["confirm"]
    with freeze_time(utcnow() + timedelta(days=8)):
        page = client.get(link, headers={"Accept-Language": "nl"})
        assert page.status_code == 410
        body = page.get_data(as_text=True)
        assert translated(app, "nl", "This link has expired") in body
        assert count(app, Subscription) == 0
        resend = client.post(
            "/confirm/resend",
            data={"csrf_token": hidden(body, "csrf_token"), "token": hidden(body, "token")},
            headers={"Referer": "https://prefs.example.be" + link},
        )
        assert resend.status_code == 200
        run_worker(app)
        assert len(smtp.messages) == 2
        assert smtp.handler.envelopes[-1][1] == [ADDRESS]
        fresh = links(smtp.messages[-1])["confirm"]
        assert click_and_press(client, fresh).status_code == 200
    assert subscription_states(app) == {"newsletter": SubscriptionStatus.SUBSCRIBED}


def test_a3_a_token_both_tampered_and_expired_is_invalid_not_expired(app, client, smtp):
    link = pending(app, client, smtp)["confirm"]
    token = link.rsplit("/", 1)[1]
    with freeze_time(utcnow() + timedelta(days=8)):
        response = client.get(f"/confirm/{_tamper(token)}")
    assert response.status_code == 400
    assert "/confirm/resend" not in response.get_data(as_text=True)


def test_a4_a_token_for_one_purpose_is_refused_by_another(app, client, smtp):
    found = pending(app, client, smtp)
    confirm_token = found["confirm"].rsplit("/", 1)[1]
    not_me_token = found["not_me"].rsplit("/", 1)[1]
    before = snapshot(app)
    assert client.get(f"/not-me/{confirm_token}").status_code == 400
    assert client.get(f"/confirm/{not_me_token}").status_code == 400
    page = client.get(found["confirm"]).get_data(as_text=True)
    assert press(client, f"/not-me/{confirm_token}", hidden(page, "csrf_token")).status_code == 400
    assert snapshot(app) == before


def test_a5_a_token_from_a_clock_two_minutes_ahead_is_accepted(app):
    with app.app_context():
        with freeze_time(utcnow() + timedelta(seconds=110)):
            token = tokens.make(tokens.Purpose.CONFIRM, {"r": "x"})
        assert tokens.load(tokens.Purpose.CONFIRM, token) == {"r": "x"}
        with freeze_time(utcnow() + timedelta(minutes=10)):
            future = tokens.make(tokens.Purpose.CONFIRM, {"r": "x"})
        with pytest.raises(tokens.TokenExpired):
            tokens.load(tokens.Purpose.CONFIRM, future)


@pytest.mark.parametrize("purpose", list(tokens.Purpose))
def test_a6_every_purpose_has_a_maximum_age_that_load_enforces(app, purpose):
    with app.app_context():
        age = tokens.max_age(purpose)
        # Manage and unsubscribe links live long (old newsletters must keep working), but not
        # for ever; revocation of those comes from the database (a per-contact version).
        assert 0 < age <= 2 * 366 * 24 * 3600
        token = tokens.make(purpose, {"r": "x"})
        with freeze_time(utcnow() + timedelta(seconds=age + 5)), pytest.raises(tokens.TokenExpired):
            tokens.load(purpose, token)


def test_a7_double_click_confirms_once(app, client, smtp):
    link = pending(app, client, smtp)["confirm"]
    csrf_token = hidden(client.get(link).get_data(as_text=True), "csrf_token")
    responses = []
    # Two clicks from the same browser: both carry its session cookie and the page's token.
    cookie = client.get_cookie("session", domain="prefs.example.be")
    threads = []
    for _click in range(2):
        other = app.test_client()
        other.set_cookie(cookie.key, cookie.value, domain="prefs.example.be")
        threads.append(
            threading.Thread(target=lambda c=other: responses.append(press(c, link, csrf_token)))
        )
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [r.status_code for r in responses] == [200, 200]
    confirmed = count(app, ConsentEvent, ConsentEvent.action == ConsentAction.CONFIRMED)
    assert confirmed == 1
    assert count(app, Subscription) == 1


def test_the_confirmed_page_links_to_the_preference_page(app, client, smtp):
    """Just confirmed, and confirmed before: both pages lead to the person's own preferences."""
    link = pending(app, client, smtp)["confirm"]
    csrf_token = hidden(client.get(link).get_data(as_text=True), "csrf_token")
    for _click in range(2):
        page = press(client, link, csrf_token).get_data(as_text=True)
        manage = re.search(r'href="(/manage/[^"]+)"', page)
        assert manage, "no link to the preference page"
        preferences = client.get(html.unescape(manage.group(1)))
        assert preferences.status_code == 200
        assert "newsletter" in preferences.get_data(as_text=True)


def test_a8_an_old_confirm_link_after_unsubscribing_does_not_resubscribe(app, client, smtp):
    link = pending(app, client, smtp)["confirm"]
    assert click_and_press(client, link).status_code == 200
    with app.app_context():
        contact_id = db.session.scalar(select(Contact.id))
        subscriptions.unsubscribe_all(
            contact_id, channel="preference-page", client=subscriptions.Client("192.0.2.1", "ua")
        )
    page = client.get(link, headers={"Accept-Language": "en"})
    assert page.status_code == 200
    assert translated(app, "nl", "This link was already used") in page.get_data(as_text=True)
    csrf_token = hidden(client.get("/").get_data(as_text=True), "csrf_token")
    assert press(client, link, csrf_token).status_code == 200
    assert subscription_states(app) == {"newsletter": SubscriptionStatus.UNSUBSCRIBED}
    assert count(app, ConsentEvent, ConsentEvent.action == ConsentAction.CONFIRMED) == 1


def test_a8_a_pending_link_is_cancelled_by_an_unsubscribe(app, client, smtp):
    subscribe(app, client, smtp, ADDRESS)
    with app.app_context():
        db.session.execute(update(SignupRequest).values(created_at=utcnow() - timedelta(days=2)))
        db.session.commit()
    second = pending(app, client, smtp, topics=["events"])["confirm"]
    with app.app_context():
        contact_id = db.session.scalar(select(Contact.id))
        subscriptions.unsubscribe_all(
            contact_id, channel="one-click", client=subscriptions.Client(None, None)
        )
    page = client.get(second, headers={"Accept-Language": "en"})
    # The subscriber's own language (nl) wins over the browser's.
    assert translated(app, "nl", "This request was withdrawn") in page.get_data(as_text=True)
    csrf_token = hidden(client.get("/").get_data(as_text=True), "csrf_token")
    assert press(client, second, csrf_token).status_code == 200
    assert set(subscription_states(app).values()) == {SubscriptionStatus.UNSUBSCRIBED}


def test_a9_a_request_past_its_deadline_is_refused_before_the_purge_runs(app, client, smtp):
    link = pending(app, client, smtp)["confirm"]
    with app.app_context():
        db.session.execute(update(SignupRequest).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    page = client.get(link)
    assert page.status_code == 410
    csrf_token = hidden(page.get_data(as_text=True), "csrf_token")
    assert press(client, link, csrf_token).status_code == 410
    assert count(app, Subscription) == 0


def test_a10_links_signed_with_the_previous_key_work_during_a_rotation(app, client, smtp):
    link = pending(app, client, smtp)["confirm"]
    app.config["SECRET_KEY_FALLBACKS"] = [app.config["SECRET_KEY"]]
    app.config["SECRET_KEY"] = "the-new-key"
    assert client.get(link).status_code == 200
    with app.app_context():
        fresh = tokens.make(tokens.Purpose.CONFIRM, {"r": "x"})
    app.config["SECRET_KEY_FALLBACKS"] = []
    assert client.get(link).status_code == 400, "the old key is gone: the link is invalid"
    with app.app_context():
        assert tokens.load(tokens.Purpose.CONFIRM, fresh) == {"r": "x"}


def test_a11_a_key_rotation_while_a_page_is_open_asks_to_reload_in_the_visitors_language(
    app, client, smtp
):
    link = pending(app, client, smtp)["confirm"]
    csrf_token = hidden(client.get(link).get_data(as_text=True), "csrf_token")
    app.config["SECRET_KEY"] = "rotated"
    app.config["SECRET_KEY_FALLBACKS"] = ["test-secret-key-not-for-production"]
    response = press(client, link, csrf_token, headers={"Accept-Language": "nl"})
    assert response.status_code == 400
    assert translated(app, "nl", "This page has expired") in response.get_data(as_text=True)
    assert count(app, Subscription) == 0
    assert click_and_press(client, link).status_code == 200, "a reload works"


def test_a12_tokens_carry_no_personal_data(app, client, smtp):
    found = pending(app, client, smtp, first_name="Jan")
    for path in found.values():
        payload = path.rsplit("/", 1)[1].split(".")[0]
        decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
        data = json.loads(decoded)
        assert set(data) == {"r"}
        assert "@" not in decoded and "Jan" not in decoded and "example" not in decoded


def test_a13_logs_never_show_a_token_or_a_full_address(app, client, smtp, caplog):
    caplog.set_level(logging.DEBUG)
    found = pending(app, client, smtp)
    smtp.handler.rcpt_replies[ADDRESS] = "451 4.3.0 Try later"
    post_signup(client, "other@example.be")
    smtp.handler.rcpt_replies["other@example.be"] = "451 4.3.0 Try later"
    run_worker(app)
    token = found["confirm"].rsplit("/", 1)[1]
    # Our loggers and the web servers'; the test SMTP server's own debug log is not ours.
    ours = "\n".join(
        r.getMessage()
        for r in caplog.records
        if r.name.startswith(("preference_center", "werkzeug"))
    )
    assert "outbox" in ours, "the retried delivery was logged"
    assert token not in ours
    assert "other@example.be" not in ours
    # The access log of the servers goes through the same filter.
    assert scrub(f'"GET {found["confirm"]} HTTP/1.1" 200') == '"GET /confirm/[token] HTTP/1.1" 200'
    assert scrub("sent to jan.peeters@example.be") == "sent to j***@example.be"


def test_a13_no_page_puts_an_address_in_its_url(app, client, smtp):
    response = post_signup(client, ADDRESS)
    assert response.status_code == 200 and not response.headers.get("Location")
    assert ADDRESS not in response.get_data(as_text=True)


def test_a14_guessing_tokens_is_rate_limited_with_one_generic_page(app, client):
    app.config["TOKEN_RATE_LIMIT"] = "5 per minute"
    bodies = set()
    for i in range(5):
        response = client.get(f"/confirm/guess{i}.abc.defghijklmnopqrstu")
        assert response.status_code == 400
        bodies.add(response.get_data(as_text=True).replace(f"guess{i}", ""))
    assert client.get("/confirm/another.abc.defghijklmnop").status_code == 429
    assert len(bodies) == 1, "the invalid page says the same whatever was guessed"


# --- B: link scanners and CSRF --------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_b1_a_scanner_fetching_the_links_changes_nothing(app, client, smtp, method):
    found = pending(app, client, smtp)
    before = snapshot(app)
    scanner = app.test_client()
    for path in found.values():
        response = scanner.open(path, method=method, headers={"User-Agent": "SafeLinks"})
        assert response.status_code == 200
    assert snapshot(app) == before
    assert count(app, ConsentEvent, ConsentEvent.action == ConsentAction.CONFIRMED) == 0


def test_b7_a_cross_site_post_without_the_csrf_token_confirms_nothing(app, client, smtp):
    found = pending(app, client, smtp)
    before = snapshot(app)
    attacker = app.test_client()
    for path in found.values():
        response = attacker.post(path, headers={"Origin": "https://evil.example"})
        assert response.status_code == 400
    assert snapshot(app) == before


def test_b10_the_confirmation_pages_cannot_be_framed(app, client, smtp):
    found = pending(app, client, smtp)
    for path in [*found.values(), "/"]:
        headers = client.get(path).headers
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"


# --- C: abuse -------------------------------------------------------------------------------


def test_c1_one_ip_gets_429_after_the_limit_before_anything_is_written(app, client, smtp):
    app.config["SIGNUP_RATE_LIMIT"] = "5 per minute"
    statuses = [post_signup(client, f"victim{i}@example.be").status_code for i in range(12)]
    assert statuses[:5] == [200] * 5
    assert set(statuses[5:]) == {429}
    assert count(app, SignupRequest) == 5
    run_worker(app)
    assert len(smtp.messages) == 5


def test_c2_many_ips_asking_for_one_address_send_one_email_a_day(app, smtp):
    for i in range(20):
        request_directly(app, ADDRESS, ip=f"198.51.100.{i}")
    run_worker(app)
    assert len(smtp.messages) == 1
    with freeze_time(utcnow() + timedelta(hours=25)):
        request_directly(app, ADDRESS, ip="198.51.100.99")
        run_worker(app)
    assert len(smtp.messages) == 2


def test_c3_an_address_already_subscribed_gets_the_ack_and_no_email(app, client, smtp):
    subscribe(app, client, smtp, ADDRESS)
    run_worker(app)  # the welcome email
    sent = len(smtp.messages)
    with freeze_time(utcnow() + timedelta(days=3)):
        response = post_signup(client, ADDRESS)
        run_worker(app)
    assert response.status_code == 200
    assert len(smtp.messages) == sent


def test_c4_the_response_is_the_same_whatever_the_address_state(app, client, smtp):
    subscribe(app, client, smtp, "confirmed@example.be")
    post_signup(client, "pending@example.be")
    subscribe(app, client, smtp, "left@example.be")
    with app.app_context():
        contact_id = db.session.scalar(select(Contact.id).where(Contact.email == "left@example.be"))
        subscriptions.unsubscribe_all(
            contact_id, channel="test", client=subscriptions.Client(None, None)
        )
        suppression.add("suppressed@example.be", SuppressionReason.ERASED)
        suppression.add(
            "blocked@example.be", SuppressionReason.NOT_ME, until=utcnow() + timedelta(days=9)
        )
        db.session.commit()

    def answer(address):
        fresh = app.test_client()
        response = post_signup(fresh, address)
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("date",)}
        return response.status_code, response.get_data(as_text=True), headers

    answers = {
        address: answer(address)
        for address in (
            "new@example.be", "pending@example.be", "confirmed@example.be",
            "left@example.be", "suppressed@example.be", "blocked@example.be",
        )
    }  # fmt: skip
    reference = answers.pop("new@example.be")
    for address, got in answers.items():
        assert got == reference, address


@pytest.mark.parametrize(
    "bot",
    ["honeypot", "never-opened-the-form", "too-fast", "form-too-old"],
)
def test_c5_a_bot_gets_the_acknowledgement_and_nothing_is_stored_or_sent(app, client, smtp, bot):
    app.config["SIGNUP_MIN_SECONDS"] = 5
    page = client.get("/").get_data(as_text=True)
    from builders import signup_form_data

    data = signup_form_data(page, ADDRESS)
    if bot == "honeypot":
        data["website"] = "http://spam.example"
    elif bot == "never-opened-the-form":
        data = {k: v for k, v in data.items() if k not in ("started", "csrf_token")}
    if bot == "form-too-old":
        with freeze_time(utcnow() + timedelta(hours=2)):
            response = client.post("/", data=data)
    elif bot == "too-fast":
        response = client.post("/", data=data)
    else:
        with freeze_time(utcnow() + timedelta(seconds=30)):
            response = client.post("/", data=data)
    assert response.status_code == 200
    assert translated(app, "en", "Please check your inbox") in response.get_data(as_text=True)
    assert count(app, Contact) == 0
    assert count(app, OutboxMessage) == 0


def test_c5_a_person_taking_their_time_is_not_a_bot(app, client, smtp):
    app.config["SIGNUP_MIN_SECONDS"] = 5
    page = client.get("/").get_data(as_text=True)
    from builders import signup_form_data

    with freeze_time(utcnow() + timedelta(seconds=20)):
        response = client.post("/", data=signup_form_data(page, ADDRESS))
    assert response.status_code == 200
    assert count(app, SignupRequest) == 1


def test_c6_every_route_that_can_send_email_shares_the_limit(app, client, smtp):
    link = pending(app, client, smtp)["confirm"]
    app.config["SIGNUP_RATE_LIMIT"] = "3 per minute"
    with freeze_time(utcnow() + timedelta(days=8)):
        body = client.get(link).get_data(as_text=True)
        data = {"csrf_token": hidden(body, "csrf_token"), "token": hidden(body, "token")}
        headers = {"Referer": "https://prefs.example.be" + link}
        statuses = [client.post("/confirm/resend", data=data, headers=headers).status_code]
        statuses += [post_signup(client, f"x{i}@example.be").status_code for i in range(3)]
    assert statuses == [200, 200, 200, 429]


@pytest.mark.parametrize("topics", ["secret-topic", "newsletter,nope", "../etc"])
def test_c7_unknown_or_private_topics_are_refused_and_nothing_is_sent(app, client, smtp, topics):
    with app.app_context():
        from preference_center.services import topics as topic_service

        topic_service.add(
            "secret-topic", name_nl="Geheim", name_fr="Secret", name_en="Secret", is_public=False
        )
    assert client.get(f"/?topics={topics}").status_code == 400
    response = post_signup(client, ADDRESS, topics=topics.split(","))
    assert response.status_code == 400
    assert count(app, SignupRequest) == 0
    assert count(app, OutboxMessage) == 0


def test_c8_a_spoofed_forwarded_for_header_does_not_escape_the_limit(app, client, smtp):
    app.config["SIGNUP_RATE_LIMIT"] = "3 per minute"
    statuses = [
        post_signup(
            client, f"v{i}@example.be", headers={"X-Forwarded-For": f"203.0.113.{i}"}
        ).status_code
        for i in range(5)
    ]
    assert statuses == [200, 200, 200, 429, 429]
    with app.app_context():
        assert db.session.scalars(select(ConsentEvent.ip)).all() == ["127.0.0.1"] * 3


def test_c10_confirmation_emails_over_the_hourly_cap_wait_in_the_outbox(app, smtp):
    app.config["CONFIRMATION_HOURLY_CAP"] = 3
    for i in range(5):
        request_directly(app, f"flood{i}@example.be")
    report = run_worker(app)
    assert len(smtp.messages) == 3
    assert report.held == 2
    assert count(app, OutboxMessage, OutboxMessage.status == OutboxStatus.PENDING) == 2
    with freeze_time(utcnow() + timedelta(hours=1, minutes=5)):
        run_worker(app)
    assert len(smtp.messages) == 5


def test_c10_the_cap_also_holds_per_recipient_domain(app, smtp):
    app.config["CONFIRMATION_HOURLY_CAP_PER_DOMAIN"] = 2
    for i in range(3):
        request_directly(app, f"a{i}@example.be")
    request_directly(app, "b@example.org")
    run_worker(app)
    domains = sorted(rcpts[0].split("@")[1] for _, rcpts in smtp.handler.envelopes)
    assert domains == ["example.be", "example.be", "example.org"]


def test_c11_an_erased_address_can_subscribe_again_only_by_confirming(app, client, smtp):
    with app.app_context():
        suppression.add(ADDRESS, SuppressionReason.ERASED)
        db.session.commit()
    found = pending(app, client, smtp)
    with app.app_context():
        assert suppression.find(ADDRESS) is not None, "a signup alone lifts nothing"
    assert click_and_press(client, found["confirm"]).status_code == 200
    with app.app_context():
        assert suppression.find(ADDRESS) is None
    assert subscription_states(app) == {"newsletter": SubscriptionStatus.SUBSCRIBED}
    assert count(app, ConsentEvent, ConsentEvent.action == ConsentAction.CONFIRMED) == 1


def test_not_me_forgets_the_request_and_blocks_signup_emails_for_a_while(app, client, smtp):
    found = pending(app, client, smtp)
    page = client.get(found["not_me"])
    assert page.status_code == 200 and "J***" not in page.get_data(as_text=True)
    response = click_and_press(client, found["not_me"])
    assert response.status_code == 200
    assert count(app, Contact) == 0
    assert count(app, SignupRequest) == 0
    with app.app_context():
        assert db.session.scalars(select(ConsentEvent.contact_id)).all() == [None]
        assert db.session.scalars(select(ConsentEvent.ip)).all() == [None]
    with freeze_time(utcnow() + timedelta(days=2)):
        post_signup(client, ADDRESS)
        run_worker(app)
    assert len(smtp.messages) == 1, "blocked"
    assert client.get(found["confirm"]).status_code == 400


def test_a_not_me_block_kept_under_the_previous_key_still_blocks_and_is_rekeyed(app, client, smtp):
    app.config["SUPPRESSION_KEY"] = "old-key"
    with app.app_context():
        suppression.add(ADDRESS, SuppressionReason.NOT_ME, until=utcnow() + timedelta(days=90))
        db.session.commit()
    app.config.update(SUPPRESSION_KEY="new-key", SUPPRESSION_KEY_FALLBACKS=["old-key"])
    assert post_signup(client, ADDRESS).status_code == 200
    run_worker(app)
    assert smtp.messages == [], "blocked during the key rotation too"
    assert count(app, Contact) == 0
    with app.app_context():
        digests = db.session.scalars(select(Suppression.digest)).all()
        assert digests == [suppression.digest(ADDRESS)], "moved to the current key"


# --- E5: the link's lifetime starts when the email leaves -----------------------------------


def test_e5_a_confirmation_email_delayed_two_days_still_gives_the_full_week(app, client, smtp):
    smtp.handler.rcpt_replies[ADDRESS] = "451 4.3.0 Try later"
    post_signup(client, ADDRESS)
    run_worker(app)
    assert smtp.messages == []
    smtp.handler.rcpt_replies.clear()
    later = utcnow() + timedelta(days=2)
    with freeze_time(later):
        run_worker(app)
        link = links(smtp.messages[0])["confirm"]
    with freeze_time(later + timedelta(days=6, hours=23)):
        assert click_and_press(client, link).status_code == 200
    assert subscription_states(app) == {"newsletter": SubscriptionStatus.SUBSCRIBED}


# --- F: concurrency -------------------------------------------------------------------------


def test_f1_two_simultaneous_signups_make_one_contact_and_one_email(app, smtp):
    barrier = threading.Barrier(4)
    errors = []

    def signup(i):
        try:
            barrier.wait(timeout=10)
            request_directly(
                app, "Race@Example.be" if i % 2 else "race@example.be", ip=f"192.0.2.{i}"
            )
        except Exception as exc:  # shown by the assertion below
            errors.append(repr(exc))

    threads = [threading.Thread(target=signup, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert count(app, Contact) == 1
    assert count(app, SignupRequest) == 1
    run_worker(app)
    assert len(smtp.messages) == 1


@pytest.mark.parametrize("attempt", range(5))
def test_f2_confirm_racing_unsubscribe_never_loses_the_unsubscribe(app, client, smtp, attempt):
    subscribe(app, client, smtp, ADDRESS)
    with app.app_context():
        db.session.execute(update(SignupRequest).values(created_at=utcnow() - timedelta(days=2)))
        db.session.commit()
        contact_id = db.session.scalar(select(Contact.id))
    link = pending(app, client, smtp, topics=["events"])["confirm"]
    request_id = tokens_request_id(app, link)
    barrier = threading.Barrier(2)
    errors = []

    def do_confirm():
        try:
            barrier.wait(timeout=10)
            with app.app_context():
                subscriptions.confirm(request_id, subscriptions.Client("192.0.2.1", "a"))
        except Exception as exc:
            errors.append(repr(exc))

    def do_unsubscribe():
        try:
            barrier.wait(timeout=10)
            with app.app_context():
                subscriptions.unsubscribe_all(
                    contact_id, channel="one-click", client=subscriptions.Client(None, None)
                )
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=do_confirm), threading.Thread(target=do_unsubscribe)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    with app.app_context():
        events = db.session.execute(
            select(ConsentEvent.action, ConsentEvent.id, Subscription.status)
            .join(Subscription, Subscription.topic_id == ConsentEvent.topic_id)
            .where(ConsentEvent.action.in_([ConsentAction.CONFIRMED, ConsentAction.WITHDRAWN]))
            .order_by(ConsentEvent.id)
        ).all()
        newsletter = db.session.scalar(
            select(Subscription).where(Subscription.topic.has(slug="newsletter"))
        )
        assert newsletter.status is SubscriptionStatus.UNSUBSCRIBED, "the unsubscribe is never lost"
        events_topic = db.session.scalar(
            select(Subscription).where(Subscription.topic.has(slug="events"))
        )
    # Whatever ran last decides, and its record is the last in the ledger.
    if events_topic is not None and events_topic.status is SubscriptionStatus.SUBSCRIBED:
        last_action = [e.action for e in events if e.action][-1]
        assert last_action is ConsentAction.CONFIRMED


def tokens_request_id(app, link):
    with app.app_context():
        return tokens.load(tokens.Purpose.CONFIRM, link.rsplit("/", 1)[1])["r"]


@pytest.mark.parametrize("attempt", range(5))
def test_f7_a_purge_racing_a_confirm_never_leaves_a_confirmation_without_its_records(
    app, client, smtp, attempt
):
    app.config["PENDING_GRACE_DAYS"] = 0
    link = pending(app, client, smtp)["confirm"]
    request_id = tokens_request_id(app, link)
    with app.app_context():
        boundary = utcnow() + timedelta(milliseconds=30)
        db.session.execute(update(SignupRequest).values(expires_at=boundary))
        db.session.execute(update(Contact).values(created_at=utcnow() - timedelta(days=1)))
        db.session.commit()
    barrier = threading.Barrier(2)
    outcome = []

    def do_confirm():
        barrier.wait(timeout=10)
        with app.app_context():
            try:
                subscriptions.confirm(request_id, subscriptions.Client("192.0.2.1", "a"))
                outcome.append("confirmed")
            except (subscriptions.RequestExpired, subscriptions.RequestNotFound):
                outcome.append("expired")

    def do_purge():
        barrier.wait(timeout=10)
        with app.app_context():
            for _ in range(3):
                retention.purge()

    threads = [threading.Thread(target=do_confirm), threading.Thread(target=do_purge)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert outcome in (["confirmed"], ["expired"])
    assert_every_subscriber_has_proof(app)
    if outcome == ["confirmed"]:
        assert subscription_states(app) == {"newsletter": SubscriptionStatus.SUBSCRIBED}


# --- K: retention and proof -----------------------------------------------------------------


def assert_every_subscriber_has_proof(app):
    """Every confirmed subscription has a complete 'requested' and 'confirmed' record (K6)."""
    with app.app_context():
        confirmed = db.session.scalars(
            select(Subscription).where(Subscription.status == SubscriptionStatus.SUBSCRIBED)
        ).all()
        for subscription in confirmed:
            events = db.session.scalars(
                select(ConsentEvent).where(
                    ConsentEvent.contact_id == subscription.contact_id,
                    ConsentEvent.topic_id == subscription.topic_id,
                )
            ).all()
            by_action = {e.action: e for e in events}
            for action in (ConsentAction.REQUESTED, ConsentAction.CONFIRMED):
                event = by_action.get(action)
                assert event is not None, f"{action} missing for subscription {subscription.id}"
                assert event.occurred_at.tzinfo is not None
                assert event.channel and event.language in ("nl", "fr", "en")
                assert event.ip and event.user_agent
                text = db.session.get(ConsentText, event.consent_text_id)
                assert text is not None and event.consent_text_sha256 == text.sha256
                assert ConsentText.hash_body(text.body) == text.sha256
            assert (
                by_action[ConsentAction.REQUESTED].occurred_at
                <= by_action[ConsentAction.CONFIRMED].occurred_at
            )


def test_k6_every_confirmed_subscription_has_complete_proof_of_consent(app, client, smtp):
    subscribe(app, client, smtp, ADDRESS, topics=["newsletter", "events"])
    subscribe(app, client, smtp, "marie@example.be", language="fr")
    with app.app_context():
        consent.publish("nl", "Een nieuwe versie van de tekst.")
    subscribe(app, app.test_client(), smtp, "piet@example.nl")
    assert count(app, Subscription, Subscription.status == SubscriptionStatus.SUBSCRIBED) == 4
    assert_every_subscriber_has_proof(app)


def test_k6_publishing_a_new_text_never_changes_earlier_records(app, client, smtp):
    subscribe(app, client, smtp, ADDRESS)
    with app.app_context():
        before = db.session.execute(
            select(ConsentEvent.consent_text_id, ConsentEvent.consent_text_sha256)
        ).all()
        text = consent.publish("nl", "Versie twee.")
        assert text.version == 2
        assert consent.current("nl").id == text.id
        after = db.session.execute(
            select(ConsentEvent.consent_text_id, ConsentEvent.consent_text_sha256)
        ).all()
    assert before == after
    page = client.get("/?lang=nl").get_data(as_text=True)
    assert "Versie twee." in page


def test_k5_the_purge_deletes_expired_requests_and_keeps_only_counts(app, client, smtp, runner):
    subscribe(app, client, smtp, "stays@example.be")
    pending(app, client, smtp, "expired@example.be")
    pending(app, client, smtp, "fresh@example.be")
    with app.app_context():
        expired = db.session.scalar(select(Contact.id).where(Contact.email == "expired@example.be"))
        db.session.execute(
            update(SignupRequest)
            .where(SignupRequest.contact_id == expired)
            .values(expires_at=utcnow() - timedelta(days=8))
        )
        db.session.execute(update(Contact).values(created_at=utcnow() - timedelta(days=30)))
        db.session.commit()
    result = runner.invoke(args=["retention", "purge", "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output)
    assert counts["expired_requests"] == 1 and counts["unconfirmed_contacts"] == 1
    with app.app_context():
        emails = set(db.session.scalars(select(Contact.email)))
        assert emails == {"stays@example.be", "fresh@example.be"}
        orphans = db.session.scalars(
            select(ConsentEvent).where(ConsentEvent.contact_id.is_(None))
        ).all()
        assert orphans and all(e.ip is None and e.user_agent is None for e in orphans)
        logged = {p.kind: p.count for p in db.session.scalars(select(PurgeLog))}
        assert logged == {"expired_requests": 1, "unconfirmed_contacts": 1}
    again = json.loads(runner.invoke(args=["retention", "purge", "--json"]).output)
    assert again["expired_requests"] == 0 and again["unconfirmed_contacts"] == 0


def test_k5_the_purge_keeps_expired_requests_for_the_grace_period(app, client, smtp):
    pending(app, client, smtp)
    with app.app_context():
        db.session.execute(update(SignupRequest).values(expires_at=utcnow() - timedelta(days=1)))
        db.session.commit()
        assert retention.purge()["expired_requests"] == 0
    assert count(app, SignupRequest) == 1


def test_k7_ip_addresses_are_truncated_and_user_agents_dropped_after_the_retention(
    app, client, smtp
):
    subscribe(app, client, smtp, ADDRESS, headers={"User-Agent": "Firefox"})
    with app.app_context():
        db.session.execute(update(ConsentEvent).values(ip="203.0.113.57"))
        db.session.commit()
        assert retention.purge()["consent_client_data"] == 0
    with app.app_context(), freeze_time(utcnow() + timedelta(days=30 * 25)):
        assert retention.purge()["consent_client_data"] == 2
        rows = db.session.execute(
            select(ConsentEvent.ip, ConsentEvent.user_agent, ConsentEvent.action)
        ).all()
    assert {(r.ip, r.user_agent) for r in rows} == {("203.0.113.0/24", None)}
    assert {r.action for r in rows} == {ConsentAction.REQUESTED, ConsentAction.CONFIRMED}
    assert retention.truncate_ip("2001:db8:1234:5678::1") == "2001:db8:1234::/48"


def test_the_signup_request_status_is_explicit(app, client, smtp):
    found = pending(app, client, smtp)
    with app.app_context():
        assert db.session.scalar(select(SignupRequest.status)) is RequestStatus.PENDING
    click_and_press(client, found["confirm"])
    with app.app_context():
        assert db.session.scalar(select(SignupRequest.status)) is RequestStatus.CONFIRMED


def test_e1_smtp_down_during_signup_loses_nothing(app, client, smtp):
    smtp.stop()
    response = post_signup(client, ADDRESS)
    assert response.status_code == 200, "the visitor sees the acknowledgement"
    assert count(app, SignupRequest) == 1
    assert run_worker(app).retried == 1
    assert count(app, OutboxMessage, OutboxMessage.status == OutboxStatus.PENDING) == 1

    from conftest import start_smtp

    back = start_smtp()
    try:
        app.extensions["mail"].port = back.port
        with freeze_time(utcnow() + timedelta(minutes=5)):
            run_worker(app)
            [message] = back.messages
            assert click_and_press(client, links(message)["confirm"]).status_code == 200
    finally:
        back.stop()
    assert subscription_states(app) == {"newsletter": SubscriptionStatus.SUBSCRIBED}


def test_the_consent_version_is_shown_with_its_date(app, client):
    page = client.get("/?lang=en").get_data(as_text=True)
    assert "Version 1 of this statement, published on" in page

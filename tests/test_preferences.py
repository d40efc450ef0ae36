"""The preference center and the one-click unsubscribe.

Catalogue rows: B2-B6, B8-B12, D10, F3, I4-I7, K1-K4, L5.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from builders import hidden, links, post_signup, press, seed_topics, subscribe
from conftest import run_worker
from flask_babel import force_locale
from flask_babel import gettext as _
from freezegun import freeze_time
from sqlalchemy import func, select

from preference_center import suppression, tokens
from preference_center.extensions import db
from preference_center.models import (
    ChangeKind,
    ConsentAction,
    ConsentEvent,
    Contact,
    LeaveReason,
    OutboxMessage,
    SignupRequest,
    SubscriberChange,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    utcnow,
)
from preference_center.services import preferences
from preference_center.views.preferences import safe_next

ADDRESS = "jan.peeters@example.be"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture(autouse=True)
def topics_exist(app):
    seed_topics(app)


def translated(app, language, message, **values):
    with app.test_request_context(), force_locale(language):
        return _(message, **values)


def contact_of(app, address=ADDRESS):
    with app.app_context():
        contact = db.session.scalar(select(Contact).where(Contact.email == address))
        if contact is not None:
            db.session.expunge(contact)
        return contact


def manage_path(app, address=ADDRESS):
    contact = contact_of(app, address)
    with app.app_context():
        token = tokens.make(tokens.Purpose.MANAGE, preferences.manage_payload(contact))
    return f"/manage/{token}"


def unsubscribe_path(app, address=ADDRESS, topic=None):
    contact = contact_of(app, address)
    with app.app_context():
        token = tokens.make(tokens.Purpose.UNSUBSCRIBE, {"c": contact.public_id, "t": topic})
    return f"/u/{token}"


def states(app, address=ADDRESS):
    with app.app_context():
        contact = db.session.scalar(select(Contact).where(Contact.email == address))
        return {s.topic.slug: s.status for s in contact.subscriptions} if contact else None


def subscribed(app, client, smtp, address=ADDRESS, topics=("newsletter", "events"), **fields):
    subscribe(app, client, smtp, address, topics=list(topics), **fields)
    run_worker(app)  # the welcome email
    return manage_path(app, address)


def save(client, path, **fields):
    page = client.get(path).get_data(as_text=True)
    data = {
        "csrf_token": hidden(page, "csrf_token"),
        "version": hidden(page, "version"),
        "consent_text_id": hidden(page, "consent_text_id"),
        "language": "nl",
        "first_name": "",
        "paused_until": "",
    }
    data.update(fields)
    return client.post(path, data=data, headers={"Referer": "https://prefs.example.be" + path})


def count(app, model, *where):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


# --- the page -------------------------------------------------------------------------------


def test_the_welcome_email_carries_the_preference_link_and_one_click_unsubscribe(app, client, smtp):
    subscribed(app, client, smtp)
    welcome = smtp.messages[-1]
    text = welcome.get_body(("plain",)).get_content()
    assert "/manage/" in text and "/u/" in text
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.search(r"<(https://[^>]+)>", welcome["List-Unsubscribe"]).group(1)
    assert url in text, "the same link is visible in the body"
    assert client.get(urlsplit(url).path).status_code == 200


def test_the_page_shows_topics_choices_and_saves_changes_with_a_ledger_entry(app, client, smtp):
    path = subscribed(app, client, smtp, first_name="Jan")
    page = client.get(path)
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Maandelijkse nieuwsbrief" in body and "j***@example.be" in body
    response = save(
        client,
        path,
        **{
            "topic-events": "y",
            "frequency-events": "monthly",
            "language": "fr",
            "first_name": "Jean",
        },
    )
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert translated(app, "fr", "Your preferences are saved.") in page
    assert states(app) == {
        "newsletter": SubscriptionStatus.UNSUBSCRIBED,
        "events": SubscriptionStatus.SUBSCRIBED,
    }
    contact = contact_of(app)
    assert (contact.language, contact.first_name) == ("fr", "Jean")
    with app.app_context():
        frequency = db.session.scalar(
            select(Subscription.frequency).where(Subscription.topic.has(slug="events"))
        )
        assert frequency == "monthly"
        actions = [
            e.action
            for e in db.session.scalars(
                select(ConsentEvent).where(ConsentEvent.channel == "preference-page")
            )
        ]
        assert ConsentAction.WITHDRAWN in actions and ConsentAction.UPDATED in actions
        entries = db.session.scalars(
            select(ConsentEvent).where(ConsentEvent.channel == "preference-page")
        ).all()
        assert all(e.consent_text_id and e.consent_text_sha256 for e in entries)


def test_pausing_until_a_date_is_stored_and_refused_in_the_past(app, client, smtp):
    path = subscribed(app, client, smtp)
    day = (utcnow() + timedelta(days=30)).date().isoformat()
    assert (
        save(
            client, path, **{"topic-newsletter": "y", "topic-events": "y", "paused_until": day}
        ).status_code
        == 303
    )
    assert contact_of(app).paused_until.date().isoformat() == day
    past = (utcnow() - timedelta(days=1)).date().isoformat()
    assert save(client, path, **{"topic-newsletter": "y", "paused_until": past}).status_code == 400
    assert contact_of(app).paused_until.date().isoformat() == day


def test_a_frequency_the_topic_does_not_offer_is_refused(app, client, smtp):
    path = subscribed(app, client, smtp)
    response = save(client, path, **{"topic-events": "y", "frequency-events": "hourly"})
    assert response.status_code == 400
    assert states(app)["newsletter"] is SubscriptionStatus.SUBSCRIBED


def test_b7_a_save_without_the_csrf_token_changes_nothing(app, client, smtp):
    """The page's forms carry no CSRF field of their own: CSRFProtect refuses the POST."""
    path = subscribed(app, client, smtp)
    before = states(app), contact_of(app).first_name, contact_of(app).prefs_version
    for token in ("", "not-a-token"):
        response = save(
            client, path, csrf_token=token, first_name="Mallory", **{"topic-events": "y"}
        )
        assert response.status_code == 400
    assert (states(app), contact_of(app).first_name, contact_of(app).prefs_version) == before


def test_f3_a_save_from_a_stale_tab_is_refused_and_nothing_is_merged(app, client, smtp):
    path = subscribed(app, client, smtp)
    first_tab = client.get(path).get_data(as_text=True)
    second_tab = client.get(path).get_data(as_text=True)
    stale = {
        "csrf_token": hidden(second_tab, "csrf_token"),
        "version": hidden(second_tab, "version"),
        "consent_text_id": hidden(second_tab, "consent_text_id"),
        "language": "nl",
        "topic-events": "y",
    }
    fresh = dict(stale, version=hidden(first_tab, "version"), **{"topic-newsletter": "y"})
    fresh.pop("topic-events")
    headers = {"Referer": "https://prefs.example.be" + path}
    assert client.post(path, data=fresh, headers=headers).status_code == 303
    response = client.post(path, data=stale, headers=headers)
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert (
        "changed elsewhere" in page
        or translated(
            app,
            "nl",
            "Your preferences were changed elsewhere in the meantime, for instance in another tab. Nothing was saved: please check them and save again.",
        )
        in page
    )
    assert states(app) == {
        "newsletter": SubscriptionStatus.SUBSCRIBED,
        "events": SubscriptionStatus.UNSUBSCRIBED,
    }


def test_i4_a_name_with_markup_or_template_syntax_is_shown_escaped(app, client, smtp):
    path = subscribed(app, client, smtp, first_name="<script>alert(1)</script>{{7*7}}")
    body = client.get(path).get_data(as_text=True)
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;" in body
    # Where the name is shown it is the template syntax as typed, never its result ("49"
    # can occur elsewhere, inside a signed link, so the check looks at the name only).
    assert "&lt;/script&gt;{{7*7}}" in body and "&lt;/script&gt;49" not in body
    html = smtp.messages[-1].get_body(("html",)).get_content()
    assert "<script>" not in html and "{{7*7}}" in html


def test_i5_after_leaving_everything_an_old_link_shows_the_state_and_only_a_post_resubscribes(
    app, client, smtp
):
    path = subscribed(app, client, smtp)
    page = client.get(path).get_data(as_text=True)
    response = press(client, f"{path}/leave", hidden(page, "csrf_token"))
    assert response.status_code == 200
    assert set(states(app).values()) == {SubscriptionStatus.UNSUBSCRIBED}
    page = client.get(path).get_data(as_text=True)
    assert "checked" not in page, "the old link shows the current state: nothing ticked"
    assert set(states(app).values()) == {SubscriptionStatus.UNSUBSCRIBED}, "a GET changed nothing"
    assert save(client, path, **{"topic-newsletter": "y"}).status_code == 303
    assert states(app)["newsletter"] is SubscriptionStatus.SUBSCRIBED
    with app.app_context():
        actions = db.session.scalars(
            select(ConsentEvent.action)
            .where(ConsentEvent.topic_id.is_not(None))
            .order_by(ConsentEvent.id)
        ).all()
    assert actions[-1] is ConsentAction.CONFIRMED and ConsentAction.WITHDRAWN in actions


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example",
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "https:evil.example",
        "///evil.example",
        "javascript:alert(1)",
        "http://prefs.example.be@evil.example",
        "/\t/evil.example",
    ],
)
def test_i6_no_redirect_leaves_the_site(app, client, smtp, target):
    assert safe_next(target, "/fallback") == "/fallback"
    path = subscribed(app, client, smtp)
    response = save(client, path, **{"topic-newsletter": "y", "next": target})
    location = response.headers["Location"]
    assert urlsplit(location).netloc in ("", "prefs.example.be")
    assert not location.startswith(("//", "/\\", "javascript:"))


def test_i6_a_same_site_path_is_followed(app, client, smtp):
    path = subscribed(app, client, smtp)
    response = save(client, path, **{"topic-newsletter": "y", "next": "/health"})
    assert response.headers["Location"].endswith("/health")


def test_i7_b8_b10_the_page_headers_protect_the_token(app, client, smtp):
    path = subscribed(app, client, smtp)
    for url in (path, f"{path}/data", f"{path}/forget", unsubscribe_path(app)):
        headers = client.get(url).headers
        assert headers["Cache-Control"] == "no-store"
        assert headers["Referrer-Policy"] == "same-origin"
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "http" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Strict-Transport-Security"].startswith("max-age=")


def test_b8_over_https_the_form_works_with_the_referrer_our_policy_sends(app, client, smtp):
    """With Referrer-Policy: no-referrer the browser would send none and every save would fail."""
    path = subscribed(app, client, smtp)
    page = client.get(path).get_data(as_text=True)
    data = {"csrf_token": hidden(page, "csrf_token"), "version": hidden(page, "version"),
            "consent_text_id": hidden(page, "consent_text_id"), "language": "nl"}  # fmt: skip
    assert client.post(path, data=data).status_code == 400, "no Referer: refused over HTTPS"
    ok = client.post(path, data=data, headers={"Referer": "https://prefs.example.be" + path})
    assert ok.status_code == 303


def test_b9_a_page_left_open_too_long_asks_to_reload_and_saves_nothing(app, client, smtp):
    path = subscribed(app, client, smtp)
    page = client.get(path).get_data(as_text=True)
    with freeze_time(utcnow() + timedelta(hours=2)):
        response = client.post(
            path,
            data={
                "csrf_token": hidden(page, "csrf_token"),
                "version": hidden(page, "version"),
                "consent_text_id": hidden(page, "consent_text_id"),
                "language": "fr",
            },
            headers={"Referer": "https://prefs.example.be" + path, "Accept-Language": "nl"},
        )
    assert response.status_code == 400
    assert translated(app, "nl", "This page has expired") in response.get_data(as_text=True)
    assert contact_of(app).language == "nl"


def test_an_expired_or_revoked_link_offers_a_fresh_one_without_enumeration(app, client, smtp):
    path = subscribed(app, client, smtp)
    with app.app_context():
        contact = db.session.scalar(select(Contact))
        contact.manage_version += 1
        db.session.commit()
    page = client.get(path)
    assert page.status_code == 410
    body = page.get_data(as_text=True)
    response = client.post(
        "/manage/resend",
        data={"csrf_token": hidden(body, "csrf_token"), "token": hidden(body, "token")},
        headers={"Referer": "https://prefs.example.be" + path},
    )
    assert response.status_code == 200
    run_worker(app)
    text = smtp.messages[-1].get_body(("plain",)).get_content()
    fresh = urlsplit(re.search(r"https://\S+/manage/\S+", text).group(0)).path
    assert client.get(fresh).status_code == 200


def test_the_start_page_sends_the_link_only_to_subscribers_and_answers_the_same(app, client, smtp):
    subscribed(app, client, smtp)
    sent_before = len(smtp.messages)

    def ask(address):
        fresh = app.test_client()
        page = fresh.get("/").get_data(as_text=True)
        token = re.findall(r'name="csrf_token" type="hidden" value="([^"]+)"', page)[-1]
        response = fresh.post("/manage", data={"csrf_token": token, "email": address},
                              headers={"Referer": "https://prefs.example.be/"})  # fmt: skip
        return response.status_code, response.get_data(as_text=True)

    assert ask(ADDRESS) == ask("nobody@example.be")
    run_worker(app)
    assert len(smtp.messages) == sent_before + 1
    assert smtp.handler.envelopes[-1][1] == [ADDRESS]
    ask(ADDRESS)
    run_worker(app)
    assert len(smtp.messages) == sent_before + 1, "at most one link per address per window"


# --- D10: changing the address --------------------------------------------------------------


def test_d10_a_new_address_is_confirmed_by_itself_and_the_old_one_is_told(app, client, smtp):
    path = subscribed(app, client, smtp)
    page = client.get(path).get_data(as_text=True)
    token = re.findall(r'name="csrf_token" type="hidden" value="([^"]+)"', page)[-1]
    response = client.post(f"{path}/email", data={"csrf_token": token, "new_email": "jan@new.example.be"},
                           headers={"Referer": "https://prefs.example.be" + path})  # fmt: skip
    assert response.status_code == 303
    run_worker(app)
    to_new = smtp.handler.to("jan@new.example.be")
    to_old = [
        m
        for m in smtp.handler.to(ADDRESS)
        if "j***@new.example.be" in m.get_body(("plain",)).get_content()
    ]
    assert len(to_new) == 1 and len(to_old) == 1
    assert contact_of(app).email == ADDRESS, "nothing moves before the new address confirms"

    link = urlsplit(
        re.search(
            r"https://\S+/email-change/\S+", to_new[0].get_body(("plain",)).get_content()
        ).group(0)
    ).path
    confirm_page = client.get(link).get_data(as_text=True)
    assert contact_of(app).email == ADDRESS, "a GET changes nothing"
    done = press(client, link, hidden(confirm_page, "csrf_token"))
    assert done.status_code == 303
    assert contact_of(app, "jan@new.example.be") is not None
    assert client.get(path).status_code == 410, "links to the old address stop working"
    assert states(app, "jan@new.example.be")["newsletter"] is SubscriptionStatus.SUBSCRIBED


def test_d10_an_address_that_is_already_subscribed_cannot_be_taken(app, client, smtp):
    path = subscribed(app, client, smtp)
    subscribed(app, app.test_client(), smtp, "other@example.be")
    with app.app_context():
        contact = db.session.scalar(select(Contact).where(Contact.email == ADDRESS))
        request = preferences.request_email_change(contact.id, "other@example.be")
        request_id = request.public_id
    with app.app_context(), pytest.raises(preferences.AddressTaken):
        preferences.confirm_email_change(request_id, preferences.Client(None, None))
    assert contact_of(app).email == ADDRESS
    assert client.get(path).status_code == 200


# --- one-click unsubscribe ------------------------------------------------------------------


def test_b2_an_rfc_8058_urlencoded_post_unsubscribes_with_200_and_is_idempotent(app, client, smtp):
    subscribed(app, client, smtp)
    path = unsubscribe_path(app)
    provider = app.test_client(use_cookies=False)
    for _attempt in range(2):
        response = provider.post(path, data="List-Unsubscribe=One-Click",
                                 content_type="application/x-www-form-urlencoded",
                                 headers={"Origin": "https://mail.google.com"})  # fmt: skip
        assert response.status_code == 200
        assert "Location" not in response.headers
    assert set(states(app).values()) == {SubscriptionStatus.UNSUBSCRIBED}
    assert (
        count(
            app,
            ConsentEvent,
            ConsentEvent.channel == "one-click",
            ConsentEvent.action == ConsentAction.WITHDRAWN,
        )
        == 2
    )


def test_b2_a_per_topic_link_leaves_only_that_list(app, client, smtp):
    subscribed(app, client, smtp)
    with app.app_context():
        from preference_center.models import Topic

        events_id = db.session.scalar(select(Topic.id).where(Topic.slug == "events"))
    response = app.test_client().post(unsubscribe_path(app, topic=events_id), data=ONE_CLICK)
    assert response.status_code == 200
    assert states(app) == {
        "newsletter": SubscriptionStatus.SUBSCRIBED,
        "events": SubscriptionStatus.UNSUBSCRIBED,
    }


def test_b3_a_multipart_post_works_the_same(app, client, smtp):
    subscribed(app, client, smtp)
    boundary = "----pcboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        f"One-Click\r\n--{boundary}--\r\n"
    )
    response = app.test_client().post(
        unsubscribe_path(app), data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert response.status_code == 200
    assert set(states(app).values()) == {SubscriptionStatus.UNSUBSCRIBED}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"List-Unsubscribe": "Yes"},
        {"List-Unsubscribe": "One-Click", "extra": "1"},
        {"foo": "bar"},
    ],
)
def test_b4_any_other_body_is_refused_and_changes_nothing(app, client, smtp, body):
    subscribed(app, client, smtp)
    response = app.test_client().post(unsubscribe_path(app), data=body)
    assert response.status_code == 400
    assert set(states(app).values()) == {SubscriptionStatus.SUBSCRIBED}


def test_b5_the_one_click_route_is_not_behind_csrf(app, client, smtp):
    subscribed(app, client, smtp)
    assert app.config["WTF_CSRF_ENABLED"] is not False
    response = app.test_client(use_cookies=False).post(unsubscribe_path(app), data=ONE_CLICK)
    assert response.status_code == 200
    assert "CSRF" not in response.get_data(as_text=True)


@pytest.mark.parametrize("token", ["guessed", "eyJjIjoiMTIzIn0.abc.defghijklmnopqrstu"])
def test_b6_a_forged_one_click_post_unsubscribes_nobody(app, client, smtp, token):
    subscribed(app, client, smtp)
    response = app.test_client().post(f"/u/{token}", data=ONE_CLICK)
    assert response.status_code == 400
    assert set(states(app).values()) == {SubscriptionStatus.SUBSCRIBED}


def test_b1_a_get_of_the_unsubscribe_link_shows_a_button_and_changes_nothing(app, client, smtp):
    subscribed(app, client, smtp)
    page = app.test_client().get(unsubscribe_path(app))
    assert page.status_code == 200 and 'value="One-Click"' in page.get_data(as_text=True)
    assert set(states(app).values()) == {SubscriptionStatus.SUBSCRIBED}


def test_one_click_posts_from_one_provider_are_never_rate_limited_away(app, client, smtp):
    addresses_ = [f"reader{i}@example.be" for i in range(6)]
    for address in addresses_:
        subscribed(app, app.test_client(), smtp, address, topics=("newsletter",))
    app.config["TOKEN_RATE_LIMIT"] = "3 per minute"
    provider = app.test_client(use_cookies=False)
    statuses = [
        provider.post(unsubscribe_path(app, a), data=ONE_CLICK).status_code for a in addresses_
    ]
    assert statuses == [200] * 6


def test_b11_list_unsubscribe_is_one_line_and_covered_by_the_dkim_signature(
    app, client, smtp, tmp_path
):
    key = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
                            check=True, capture_output=True).stdout  # fmt: skip
    app.config.update(DKIM_PRIVATE_KEY=str(key), DKIM_SELECTOR="pc2026")
    subscribed(app, client, smtp)
    welcome = smtp.messages[-1]
    raw = smtp.handler.raw[-1]
    line = next(h for h in raw.split(b"\r\n") if h.lower().startswith(b"list-unsubscribe:"))
    assert len(line) < 998
    signature = welcome["DKIM-Signature"]
    signed = (
        re.search(r"h=([^;]+)", signature.replace("\r\n", "").replace(" ", ""))
        .group(1)
        .lower()
        .split(":")
    )
    assert "list-unsubscribe" in signed and "list-unsubscribe-post" in signed

    import base64

    import dkim

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dns(name, timeout=5):
        assert name == b"pc2026._domainkey.prefs.example.be."
        return record

    assert dkim.verify(raw, dnsfunc=dns)


def test_b12_a_marketing_email_without_a_visible_unsubscribe_link_is_never_built(app):
    from preference_center.mail import messages

    rendered = messages.Rendered("Nieuws", "Geen link hier", None, "nl")
    with app.test_request_context():
        with pytest.raises(messages.MissingUnsubscribe):
            messages._with_unsubscribe(
                rendered, {"unsubscribe_url": "https://prefs.example.be/u/x"}
            )
        with pytest.raises(messages.MissingUnsubscribe):
            messages._with_unsubscribe(rendered, {})
        ok = messages._with_unsubscribe(
            messages.Rendered("Nieuws", "Afmelden: https://prefs.example.be/u/x", None, "nl"),
            {"unsubscribe_url": "https://prefs.example.be/u/x"},
        )
    assert ok.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_configured_mailbox_adds_a_mailto_to_list_unsubscribe(app, client, smtp):
    app.config["UNSUBSCRIBE_MAILBOX"] = "unsubscribe@prefs.example.be"
    subscribed(app, client, smtp)
    header = smtp.messages[-1]["List-Unsubscribe"]
    assert (
        header.startswith("<https://") and "<mailto:unsubscribe@prefs.example.be?subject=" in header
    )


def test_b7_a_leave_reason_without_the_csrf_token_is_not_stored(app, client, smtp):
    """The page's reason form carries no CSRF field of its own: CSRFProtect refuses the POST."""
    subscribed(app, client, smtp)
    client.post(unsubscribe_path(app), data=ONE_CLICK)
    response = client.post(
        "/leave-reason?language=nl",
        data={"csrf_token": "not-a-token", "reason": "too-many", "comment": "Te vaak"},
        headers={"Referer": "https://prefs.example.be/u/x"},
    )
    assert response.status_code == 400
    assert count(app, LeaveReason) == 0


def test_the_leave_reason_is_stored_without_any_link_to_the_person(app, client, smtp):
    subscribed(app, client, smtp)
    page = client.post(unsubscribe_path(app), data=ONE_CLICK).get_data(as_text=True)
    response = client.post(
        "/leave-reason?language=nl",
        data={"csrf_token": hidden(page, "csrf_token"), "reason": "too-many", "comment": "Te vaak"},
        headers={"Referer": "https://prefs.example.be/u/x"},
    )
    assert response.status_code == 200
    with app.app_context():
        [reason] = db.session.scalars(select(LeaveReason)).all()
        assert (reason.reason, reason.comment, reason.language) == ("too-many", "Te vaak", "nl")
        assert not hasattr(reason, "contact_id")


# --- K: see, download, forget ---------------------------------------------------------------


def test_the_what_we_hold_page_lists_every_field_its_purpose_and_the_history(app, client, smtp):
    path = subscribed(app, client, smtp, first_name="Jan")
    page = client.get(f"{path}/data").get_data(as_text=True)
    for label in ("Email address", "First name", "Consent history"):
        assert translated(app, "nl", label) in page
    assert "Jan.Peeters@example.be".lower() in page.lower()
    assert page.count("<li><time") >= 4, "requested and confirmed, for two topics"


def test_k1_the_data_goes_only_to_the_mailbox_through_an_export_link(app, client, smtp):
    path = subscribed(app, client, smtp)
    page = client.get(f"{path}/data").get_data(as_text=True)
    response = press(
        client,
        f"{path}/export",
        re.findall(r'name="csrf_token" type="hidden" value="([^"]+)"', page)[-1],
    )
    assert response.status_code == 303
    assert "@" not in client.get(response.headers["Location"]).headers.get("Location", "")
    run_worker(app)
    text = smtp.messages[-1].get_body(("plain",)).get_content()
    export = urlsplit(re.search(r"https://\S+/export/\S+", text).group(0)).path
    assert client.get(export).status_code == 200
    with app.app_context():
        token = export.rsplit("/", 1)[1]
        assert client.get(f"/manage/{token}").status_code == 400, (
            "an export token opens nothing else"
        )
    with freeze_time(utcnow() + timedelta(hours=25)):
        assert client.get(export).status_code == 410


def test_k2_the_export_holds_profile_subscriptions_and_the_full_consent_history(app, client, smtp):
    subscribed(app, client, smtp, first_name="Jan")
    contact = contact_of(app)
    with app.app_context():
        token = tokens.make(tokens.Purpose.EXPORT, preferences.manage_payload(contact))
    data = json.loads(client.get(f"/export/{token}/my-data.json").get_data(as_text=True))
    assert data["profile"]["email"] == ADDRESS
    assert {s["topic"] for s in data["subscriptions"]} == {"newsletter", "events"}
    history = data["consent_history"]
    assert {e["action"] for e in history} >= {"requested", "confirmed"}
    assert all(
        e["consent_text_version"] == 1 and len(e["consent_text_sha256"]) == 64 for e in history
    )
    assert all(e["consent_text"] for e in history)
    csv_body = client.get(f"/export/{token}/my-data.csv").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(csv_body)))
    assert rows[0] == ["section", "item", "field", "value"]
    assert ["profile", "", "first_name", "Jan"] in rows


@pytest.mark.parametrize(
    "name", ['=HYPERLINK("http://x","click")', "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx"]
)
def test_l5_formula_cells_are_neutralised_in_the_csv_export(app, client, smtp, name):
    subscribed(app, client, smtp)
    with app.app_context():
        contact = db.session.scalar(select(Contact))
        contact.first_name = name
        db.session.commit()
        token = tokens.make(tokens.Purpose.EXPORT, preferences.manage_payload(contact))
    rows = list(
        csv.reader(io.StringIO(client.get(f"/export/{token}/my-data.csv").get_data(as_text=True)))
    )
    [value] = [r[3] for r in rows if r[2] == "first_name"]
    assert value == "'" + name


def test_k3_forgetting_erases_every_trace_and_keeps_only_a_keyed_hash(app, client, smtp):
    path = subscribed(app, client, smtp, first_name="Jan")
    post_signup(app.test_client(), ADDRESS, topics=["product-news"])  # a pending request too
    page = client.get(f"{path}/forget")
    assert page.status_code == 200
    assert count(app, Contact) == 1, "the confirmation page changes nothing"
    response = press(client, f"{path}/forget", hidden(page.get_data(as_text=True), "csrf_token"))
    assert response.status_code == 200
    for model in (Contact, Subscription, SignupRequest, OutboxMessage):
        assert count(app, model) == 0, model.__name__
    with app.app_context():
        assert all(e.contact_id is None and e.ip is None and e.user_agent is None
                   for e in db.session.scalars(select(ConsentEvent)))  # fmt: skip
        [entry] = db.session.scalars(select(Suppression)).all()
        assert entry.reason is SuppressionReason.ERASED and ADDRESS not in entry.digest
        assert suppression.find(ADDRESS) is not None
        tombstone = db.session.scalar(
            select(SubscriberChange).where(SubscriberChange.kind == ChangeKind.ERASED)
        )
        assert tombstone.email == ADDRESS
        dump = " ".join(
            str(v) for row in db.session.execute(select(ConsentEvent)).all() for v in row
        )
    assert "Jan" not in dump
    assert client.get(path).status_code == 410


def test_k3_erasure_tombstones_lose_their_address_after_the_period(app, client, smtp):
    path = subscribed(app, client, smtp)
    page = client.get(f"{path}/forget").get_data(as_text=True)
    press(client, f"{path}/forget", hidden(page, "csrf_token"))
    with app.app_context(), freeze_time(utcnow() + timedelta(days=31)):
        from preference_center.services import retention

        # One tombstone per topic the person was confirmed for (each list learns of its own).
        tombstones = db.session.scalars(
            select(SubscriberChange.topic_id).where(SubscriberChange.kind == ChangeKind.ERASED)
        ).all()
        assert len(tombstones) == len(set(tombstones)) >= 1
        assert retention.purge()["erasure_tombstones"] == len(tombstones)
        assert (
            db.session.scalar(
                select(SubscriberChange.email).where(SubscriberChange.kind == ChangeKind.ERASED)
            )
            is None
        )


def test_k4_an_erased_person_can_come_back_only_through_a_fresh_double_opt_in(app, client, smtp):
    path = subscribed(app, client, smtp)
    page = client.get(f"{path}/forget").get_data(as_text=True)
    press(client, f"{path}/forget", hidden(page, "csrf_token"))
    with freeze_time(utcnow() + timedelta(days=2)):
        post_signup(app.test_client(), ADDRESS)
        run_worker(app)
        with app.app_context():
            assert suppression.find(ADDRESS) is not None, "a signup alone lifts nothing"
        link = links(smtp.handler.to(ADDRESS)[-1])["confirm"]
        fresh = app.test_client()
        page = fresh.get(link).get_data(as_text=True)
        assert press(fresh, link, hidden(page, "csrf_token")).status_code == 200
    with app.app_context():
        assert suppression.find(ADDRESS) is None
    assert states(app) == {"newsletter": SubscriptionStatus.SUBSCRIBED}

"""The double opt-in walked as a person does, in a real browser: form, email, link, button.

Each test drives chromium against the live server, delivers the confirmation email with the
outbox worker to the test SMTP server, follows the link from the email text and checks the
database from the test. Expected interface strings are rendered from the catalogues (never
typed here), so the tests follow the translators but still catch an English page or email.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
from browser_support import app_config as app_config
from browser_support import live_server as live_server
from browser_support import new_page as new_page
from browser_support import screenshot
from browser_support import sqlite_only as sqlite_only
from builders import seed_topics
from conftest import run_worker
from flask_babel import force_locale, gettext
from playwright.sync_api import expect
from sqlalchemy import select

from preference_center import addresses
from preference_center.extensions import db
from preference_center.models import (
    ConsentAction,
    ConsentEvent,
    Contact,
    SignupRequest,
    Subscription,
    SubscriptionStatus,
)

pytestmark = pytest.mark.browser

LOCALES = [
    pytest.param("nl-BE", "nl", "Maandelijkse nieuwsbrief", id="nl-BE"),
    pytest.param("fr-BE", "fr", "Newsletter mensuelle", id="fr-BE"),
    pytest.param("en-GB", "en", "Monthly newsletter", id="en-GB"),
]
FIRST_NAME = "Jan"


# --- helpers ------------------------------------------------------------------------------


def translated(app: Any, language: str, message: str, **variables: Any) -> str:
    """``message`` as the app renders it in ``language`` (from the compiled catalogue)."""
    with app.test_request_context(), force_locale(language):
        return gettext(message, **variables)


def heading(page: Any) -> Any:
    return page.get_by_role("heading", level=1)


def fill_signup_form(
    page: Any, email: str, first_name: str = FIRST_NAME, topic: str = "newsletter"
) -> None:
    page.locator("#email").fill(email)
    page.locator("#first_name").fill(first_name)
    page.locator(f".choices input[value='{topic}']").check()
    page.locator("#consent").check()


def submit(page: Any) -> Any:
    """Press the form's button; the response of the POST that follows."""
    with page.expect_response(lambda r: r.request.method == "POST") as response:
        page.locator("form.signup button[type=submit]").click()
    page.wait_for_load_state()
    return response.value


def emailed_link(message: Any, live_server: Any, kind: str) -> str:
    """The absolute ``/confirm/...`` or ``/not-me/...`` URL in an email's text part."""
    text = message.get_body(("plain",)).get_content()
    found = re.findall(rf"{re.escape(live_server.url)}/{kind}/\S+", text)
    assert len(found) == 1, f"expected one /{kind}/ link in the email, found {found}:\n{text}"
    return found[0]


def deliver(app: Any, smtp: Any, email: str) -> Any:
    """Run the outbox worker once; the single email it sent to ``email``."""
    before = len(smtp.handler.to(email))
    report = run_worker(app)
    received = smtp.handler.to(email)
    assert len(received) == before + 1, (report, [m["Subject"] for m in received])
    return received[-1]


def rows(app: Any, model: Any, *where: Any) -> list[Any]:
    with app.app_context():
        found = list(db.session.scalars(select(model).where(*where)))
        db.session.expunge_all()
        return found


def contact_rows(app: Any, email: str) -> list[Any]:
    return rows(app, Contact, Contact.email == addresses.parse(email).canonical)


# --- the double opt-in --------------------------------------------------------------------


@pytest.mark.parametrize(("locale", "language", "topic_name"), LOCALES)
def test_a_visitor_subscribes_through_the_form_the_email_and_the_button_in_their_language(
    app, smtp, live_server, new_page, locale, language, topic_name
):
    seed_topics(app)
    email = f"jan.peeters.{language}@example.be"
    page = new_page(locale=locale)

    # 1. The form, in the browser's language.
    page.goto(live_server.url + "/")
    expect(page.locator("html")).to_have_attribute("lang", language)
    expect(page.locator(".choices label").first).to_have_text(topic_name)
    fill_signup_form(page, email)
    screenshot(page, f"signup-form-{language}")
    response = submit(page)

    assert response.status == 200
    check_inbox = translated(app, language, "Please check your inbox")
    if language != "en":
        assert check_inbox != "Please check your inbox", f"no {language} translation"
    expect(page.locator("html")).to_have_attribute("lang", language)
    expect(heading(page)).to_have_text(check_inbox)
    screenshot(page, f"check-inbox-{language}")

    # 2. The email: in the same language, with a link that only shows a page.
    message = deliver(app, smtp, email)
    assert message["Content-Language"] == language
    site = app.config["SITE_NAME"]
    assert message["Subject"] == translated(
        app, language, "Please confirm your subscription to %(site)s", site=site
    )
    assert topic_name in message.get_body(("plain",)).get_content()

    page.goto(emailed_link(message, live_server, "confirm"))
    expect(page.locator("html")).to_have_attribute("lang", language)
    expect(heading(page)).to_have_text(translated(app, language, "Confirm your subscription"))
    expect(page.locator("main")).to_contain_text(addresses.mask(email))
    expect(page.locator(".topics li")).to_have_text([topic_name])
    button = page.get_by_role("button", name=translated(app, language, "Yes, subscribe me"))
    expect(button).to_be_visible()
    assert rows(app, Subscription) == [], "opening the link alone subscribed the visitor"
    screenshot(page, f"confirm-{language}")

    # 3. The button: subscribed once, with the request and the confirmation in the ledger.
    button.click()
    expect(heading(page)).to_have_text(
        translated(app, language, "Thank you, %(name)s: you are subscribed", name=FIRST_NAME)
    )
    expect(page.locator("html")).to_have_attribute("lang", language)
    expect(page.locator(".topics li strong")).to_have_text([topic_name])
    screenshot(page, f"confirmed-{language}")

    [contact] = contact_rows(app, email)
    assert (contact.first_name, contact.language) == (FIRST_NAME, language)
    subscriptions = rows(app, Subscription)
    assert [(s.contact_id, s.status) for s in subscriptions] == [
        (contact.id, SubscriptionStatus.SUBSCRIBED)
    ]
    events = rows(app, ConsentEvent, ConsentEvent.contact_id == contact.id)
    assert Counter(e.action for e in events) == {
        ConsentAction.REQUESTED: 1,
        ConsentAction.CONFIRMED: 1,
    }
    assert all(e.topic_id == subscriptions[0].topic_id for e in events)
    assert all(e.consent_text_id is not None for e in events), "consent without its text"


def test_someone_whose_address_was_used_by_another_can_say_this_was_not_me(
    app, smtp, live_server, new_page
):
    seed_topics(app)
    email = "not.me@example.org"
    page = new_page(locale="en-GB")
    page.goto(live_server.url + "/")
    fill_signup_form(page, email, first_name="Someone")
    assert submit(page).status == 200
    message = deliver(app, smtp, email)

    page.goto(emailed_link(message, live_server, "not-me"))
    expect(heading(page)).to_have_text(translated(app, "en", "Did someone else use your address?"))
    expect(page.locator("main")).to_contain_text(addresses.mask(email))
    page.get_by_role("button", name="This was not me: delete the request").click()
    expect(heading(page)).to_have_text("Thank you, we removed this request")
    screenshot(page, "not-me-en")

    assert contact_rows(app, email) == [], "the contact outlived 'this was not me'"
    assert rows(app, SignupRequest) == []

    # Whoever used the address tries again: the same page, and no email leaves.
    sent = len(smtp.messages)
    page.goto(live_server.url + "/")
    fill_signup_form(page, email)
    assert submit(page).status == 200
    expect(heading(page)).to_have_text("Please check your inbox")
    report = run_worker(app)
    assert len(smtp.messages) == sent, f"an email left for a blocked address: {report}"
    assert rows(app, SignupRequest) == []
    # The block is kept as a keyed hash only: the refused signup must not store the address.
    assert contact_rows(app, email) == [], "a blocked signup stored the address again"


# --- small screens, the keyboard, and mistakes ----------------------------------------------


def tab_until_focused(page: Any, target: Any, presses: int = 12) -> None:
    """Press Tab until ``target`` has the focus; the honeypot must never get it on the way."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        assert not page.locator("#website").evaluate("el => el === document.activeElement"), (
            "Tab reached the hidden honeypot field"
        )
        if target.evaluate("el => el === document.activeElement"):
            return
    raise AssertionError(f"{target} never got the focus after {presses} Tab presses")


def test_the_form_fits_320_pixels_and_can_be_sent_with_the_keyboard_alone(
    app, live_server, new_page
):
    seed_topics(app)
    page = new_page(locale="nl-BE", viewport={"width": 320, "height": 640})
    page.goto(live_server.url + "/")

    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= 320, f"the form is {scroll_width}px wide on a 320px screen"

    page.locator("#email").focus()
    page.keyboard.type("an.janssens@example.be")
    page.keyboard.press("Tab")
    expect(page.locator("#first_name")).to_be_focused()
    page.keyboard.type("An")

    topic = page.locator(".choices input[value='newsletter']")
    tab_until_focused(page, topic)
    page.keyboard.press("Space")
    expect(topic).to_be_checked()

    consent = page.locator("#consent")
    tab_until_focused(page, consent)
    page.keyboard.press("Space")
    expect(consent).to_be_checked()

    button = page.locator("form.signup button[type=submit]")
    tab_until_focused(page, button)
    screenshot(page, "signup-form-320px")
    with page.expect_response(lambda r: r.request.method == "POST") as response:
        page.keyboard.press("Enter")
    assert response.value.status == 200
    expect(heading(page)).to_have_text(translated(app, "nl", "Please check your inbox"))
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= 320, f"the next page is {scroll_width}px wide on a 320px screen"


def test_a_form_with_a_bad_address_and_no_topic_shows_both_errors_and_keeps_what_was_typed(
    app, live_server, new_page
):
    seed_topics(app)
    page = new_page(locale="en-GB")
    page.goto(live_server.url + "/")
    page.locator("#email").fill("jan@")
    page.locator("#first_name").fill(FIRST_NAME)
    page.locator("#consent").check()

    response = submit(page)

    assert response.status == 400
    email_error = page.locator("#email-error")
    expect(email_error).to_have_text("The part after the @ is not a valid domain name.")
    expect(page.locator("#email")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("fieldset.has-error .error")).to_have_text(
        "Please choose at least one topic."
    )
    expect(page.locator("#email")).to_have_value("jan@")
    expect(page.locator("#first_name")).to_have_value(FIRST_NAME)
    expect(page.locator("#consent")).to_be_checked()
    assert rows(app, Contact) == []

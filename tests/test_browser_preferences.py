"""The preference center walked as a subscriber does, in a real browser, from the emails on.

Each test signs up and confirms through the browser, delivers the welcome email with the outbox
worker to the test SMTP server and follows the links in the emails' text. Expected interface
strings are rendered from the catalogues (never typed here), so the tests follow the
translators but still catch an English page. The database is checked from the test.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path
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
    LeaveReason,
    Subscription,
    SubscriptionStatus,
)

pytestmark = pytest.mark.browser

LOCALES = [
    pytest.param("nl-BE", "nl", id="nl-BE"),
    pytest.param("fr-BE", "fr", id="fr-BE"),
    pytest.param("en-GB", "en", id="en-GB"),
]
#: Another language for each, to change to on the preference page (and back).
OTHER_LANGUAGE = {"nl": "fr", "fr": "nl", "en": "nl"}
FIRST_NAME = "An"


# --- helpers ------------------------------------------------------------------------------


def translated(app: Any, language: str, message: str, **variables: Any) -> str:
    """``message`` as the app renders it in ``language`` (from the compiled catalogue)."""
    with app.test_request_context(), force_locale(language):
        return gettext(message, **variables)


def heading(page: Any) -> Any:
    return page.get_by_role("heading", level=1)


def button(page: Any, app: Any, language: str, name: str) -> Any:
    return page.get_by_role("button", name=translated(app, language, name), exact=True)


def expect_language(page: Any, language: str) -> None:
    expect(page.locator("html")).to_have_attribute("lang", language)


def deliver(app: Any, smtp: Any, email: str) -> Any:
    """Run the outbox worker once; the single email it sent to ``email``."""
    before = len(smtp.handler.to(email))
    report = run_worker(app)
    received = smtp.handler.to(email)
    assert len(received) == before + 1, (report, [m["Subject"] for m in received])
    return received[-1]


def emailed_link(message: Any, live_server: Any, kind: str) -> str:
    """The one absolute ``/<kind>/...`` URL in an email's text part."""
    text = message.get_body(("plain",)).get_content()
    found = re.findall(rf"{re.escape(live_server.url)}/{kind}/\S+", text)
    assert len(found) == 1, f"expected one /{kind}/ link in the email, found {found}:\n{text}"
    return found[0]


def subscribe_in_browser(
    app: Any, smtp: Any, live_server: Any, page: Any, language: str, email: str
) -> Any:
    """Sign up for the newsletter and confirm, as in test_browser_signup; the welcome email."""
    page.goto(live_server.url + "/")
    expect_language(page, language)
    page.locator("#email").fill(email)
    page.locator("#first_name").fill(FIRST_NAME)
    page.locator(".choices input[value='newsletter']").check()
    page.locator("#consent").check()
    page.locator("form.signup button[type=submit]").click()
    expect(heading(page)).to_have_text(translated(app, language, "Please check your inbox"))

    page.goto(emailed_link(deliver(app, smtp, email), live_server, "confirm"))
    button(page, app, language, "Yes, subscribe me").click()
    expect(heading(page)).to_have_text(
        translated(app, language, "Thank you, %(name)s: you are subscribed", name=FIRST_NAME)
    )
    return deliver(app, smtp, email)


def contact_of(app: Any, email: str) -> Contact | None:
    with app.app_context():
        contact = db.session.scalar(
            select(Contact).where(Contact.email == addresses.parse(email).canonical)
        )
        if contact is not None:
            db.session.expunge(contact)
        return contact


def subscriptions_of(app: Any, email: str) -> dict[str, tuple[SubscriptionStatus, str | None]]:
    with app.app_context():
        contact = db.session.scalar(
            select(Contact).where(Contact.email == addresses.parse(email).canonical)
        )
        return {s.topic.slug: (s.status, s.frequency) for s in contact.subscriptions}


def expect_flash(page: Any, text: str) -> None:
    expect(page.locator("main .flash-success")).to_have_text(text)


# --- the whole preference center, in each language ------------------------------------------


@pytest.mark.parametrize(("locale", "language"), LOCALES)
def test_a_subscriber_changes_downloads_leaves_and_is_forgotten_from_the_emailed_links(
    app, smtp, live_server, new_page, locale, language
):
    seed_topics(app)
    email = f"an.janssens.{language}@example.be"
    page = new_page(locale=locale)
    welcome = subscribe_in_browser(app, smtp, live_server, page, language, email)
    assert welcome["Content-Language"] == language
    manage_link = emailed_link(welcome, live_server, "manage")

    # 1. The preference page, from the welcome email: what the form gave, in this language.
    page.goto(manage_link)
    expect_language(page, language)
    expect(heading(page)).to_have_text(translated(app, language, "Your preferences"))
    expect(page.locator("main")).to_contain_text(addresses.mask(email))
    expect(page.locator("#topic-newsletter")).to_be_checked()
    expect(page.locator("#topic-events")).not_to_be_checked()
    expect(page.locator("#first_name")).to_have_value(FIRST_NAME)
    expect(page.locator("#language")).to_have_value(language)

    # 2. Topics, a frequency, a pause and another language, saved at once.
    page.locator("#topic-newsletter").uncheck()
    page.locator("#topic-events").check()
    page.locator("#topic-product-news").check()
    frequency = page.locator("#frequency-events")
    expect(frequency.locator("option")).to_have_text(
        [
            translated(app, language, "Every issue"),
            translated(app, language, "Once a month, as a digest"),
        ]
    )
    frequency.select_option("monthly")
    pause = (date.today() + timedelta(days=30)).isoformat()
    page.locator("#paused_until").fill(pause)
    other = OTHER_LANGUAGE[language]
    page.locator("#language").select_option(other)
    screenshot(page, f"preferences-{language}")
    button(page, app, language, "Save").click()

    # The next page speaks the language just chosen, and says so in it.
    expect_flash(page, translated(app, other, "Your preferences are saved."))
    expect_language(page, other)
    expect(page.locator("#topic-newsletter")).not_to_be_checked()
    expect(page.locator("#topic-events")).to_be_checked()
    expect(page.locator("#frequency-events")).to_have_value("monthly")
    expect(page.locator("#paused_until")).to_have_value(pause)
    contact = contact_of(app, email)
    assert contact.language == other
    assert contact.paused_until.date().isoformat() == pause
    assert subscriptions_of(app, email) == {
        "newsletter": (SubscriptionStatus.UNSUBSCRIBED, None),
        "events": (SubscriptionStatus.SUBSCRIBED, "monthly"),
        "product-news": (SubscriptionStatus.SUBSCRIBED, None),
    }

    # Back to the subscriber's own language: one more save, everything else kept.
    page.locator("#language").select_option(language)
    button(page, app, other, "Save").click()
    expect_flash(page, translated(app, language, "Your preferences are saved."))
    expect_language(page, language)
    expect(page.locator("#paused_until")).to_have_value(pause)
    assert contact_of(app, email).language == language
    assert subscriptions_of(app, email)["events"] == (SubscriptionStatus.SUBSCRIBED, "monthly")

    # 3. What we hold about you and why, and the download link by email.
    page.get_by_role(
        "link", name=translated(app, language, "What we hold about you and why")
    ).click()
    expect(heading(page)).to_have_text(translated(app, language, "What we hold about you and why"))
    expect_language(page, language)
    expect(page.locator(".inventory")).to_contain_text(email)
    expect(page.locator(".inventory")).to_contain_text(FIRST_NAME)
    expect(page.locator(".history li")).not_to_have_count(0)
    screenshot(page, f"what-we-hold-{language}")
    button(page, app, language, "Email me a download link").click()
    expect_flash(
        page, translated(app, language, "We sent you an email with a link to download your data.")
    )

    export_email = deliver(app, smtp, email)
    assert export_email["Content-Language"] == language
    page.goto(emailed_link(export_email, live_server, "export"))
    expect_language(page, language)
    expect(heading(page)).to_have_text(translated(app, language, "Download your data"))
    screenshot(page, f"export-{language}")
    with page.expect_download() as started:
        page.get_by_role("link", name=translated(app, language, "Download as JSON")).click()
    download = started.value
    assert download.suggested_filename == "my-data.json"
    data = json.loads(Path(download.path()).read_text(encoding="utf-8"))
    assert data["profile"]["email"] == addresses.parse(email).canonical
    assert email in json.dumps(data)

    # 4. Unsubscribe from everything, and the optional question on the way out.
    page.goto(manage_link)
    button(page, app, language, "Unsubscribe from everything").click()
    expect(heading(page)).to_have_text(translated(app, language, "You are unsubscribed"))
    expect_language(page, language)
    assert {status for status, _ in subscriptions_of(app, email).values()} == {
        SubscriptionStatus.UNSUBSCRIBED
    }
    screenshot(page, f"unsubscribed-{language}")
    page.get_by_label(translated(app, language, "I receive too many emails")).check()
    page.get_by_label(
        translated(app, language, "Anything else you want to tell us? (optional)")
    ).fill("Te veel mails / trop de courriels")
    button(page, app, language, "Send").click()
    expect(heading(page)).to_have_text(translated(app, language, "Thank you for telling us"))
    with app.app_context():
        reasons = [(r.reason, r.language) for r in db.session.scalars(select(LeaveReason))]
    assert reasons == [("too-many", language)]

    # 5. The old link still opens the page, with nothing ticked; then "Forget me".
    page.goto(manage_link)
    expect(heading(page)).to_have_text(translated(app, language, "Your preferences"))
    expect(page.locator(".choices input[type=checkbox]")).to_have_count(3)
    for checkbox in page.locator(".choices input[type=checkbox]").all():
        expect(checkbox).not_to_be_checked()
    page.get_by_role(
        "link", name=translated(app, language, "Forget me: delete all my data")
    ).click()
    expect(heading(page)).to_have_text(translated(app, language, "Forget me"))
    expect(page.locator("main")).to_contain_text(addresses.mask(email))
    assert contact_of(app, email) is not None, "opening the page erased the contact"
    screenshot(page, f"forget-{language}")
    button(page, app, language, "Yes, delete all my data").click()
    expect(heading(page)).to_have_text(translated(app, language, "Your data has been erased"))
    expect_language(page, language)
    screenshot(page, f"forgotten-{language}")

    assert contact_of(app, email) is None, "the contact outlived 'forget me'"
    page.goto(manage_link)
    expect(heading(page)).to_have_text(translated(app, language, "This link no longer works"))


# --- the one-click link, opened by a person --------------------------------------------------


@pytest.mark.parametrize(("locale", "language"), [LOCALES[0], LOCALES[1]])
def test_the_one_click_link_from_the_welcome_email_shows_a_button_that_unsubscribes(
    app, smtp, live_server, new_page, locale, language
):
    seed_topics(app)
    email = f"jan.peeters.{language}@example.org"
    page = new_page(locale=locale)
    welcome = subscribe_in_browser(app, smtp, live_server, page, language, email)
    link = emailed_link(welcome, live_server, "u")
    assert link in welcome["List-Unsubscribe"], "the header and the body carry the same link"

    page.goto(link)
    expect_language(page, language)
    expect(heading(page)).to_have_text(translated(app, language, "Unsubscribe"))
    unsubscribe = button(page, app, language, "Unsubscribe")
    expect(unsubscribe).to_be_visible()
    screenshot(page, f"one-click-{language}")
    assert subscriptions_of(app, email) == {"newsletter": (SubscriptionStatus.SUBSCRIBED, None)}, (
        "opening the link alone unsubscribed the person"
    )

    unsubscribe.click()
    expect(heading(page)).to_have_text(translated(app, language, "You are unsubscribed"))
    expect_language(page, language)
    screenshot(page, f"one-click-unsubscribed-{language}")
    assert subscriptions_of(app, email) == {"newsletter": (SubscriptionStatus.UNSUBSCRIBED, None)}
    with app.app_context():
        withdrawn = db.session.scalars(
            select(ConsentEvent.channel).where(ConsentEvent.action == ConsentAction.WITHDRAWN)
        ).all()
    assert withdrawn == ["one-click"]

    # The page links back to the preferences, which show the new state.
    page.get_by_role(
        "link", name=translated(app, language, "See or change your preferences")
    ).click()
    expect(heading(page)).to_have_text(translated(app, language, "Your preferences"))
    expect(page.locator("#topic-newsletter")).not_to_be_checked()
    with app.app_context():
        assert db.session.scalar(select(Subscription.status)) is SubscriptionStatus.UNSUBSCRIBED


# --- one language per page ------------------------------------------------------------------


def test_after_choosing_the_page_language_a_saved_email_language_is_confirmed_in_the_page_language(
    app, smtp, live_server, new_page
):
    seed_topics(app)
    email = "switcher@example.org"
    page = new_page(locale="en-GB")
    welcome = subscribe_in_browser(app, smtp, live_server, page, "en", email)
    page.goto(emailed_link(welcome, live_server, "manage"))
    page.get_by_role("link", name="Nederlands").click()
    expect_language(page, "nl")

    page.locator("#language").select_option("fr")
    button(page, app, "nl", "Save").click()

    expect(page.locator("main .flash-success")).to_be_visible()
    assert contact_of(app, email).language == "fr"
    shown = page.locator("html").get_attribute("lang")
    expect_flash(page, translated(app, shown, "Your preferences are saved."))

"""The start page and the development mailbox, in a real browser.

The nl and fr catalogues are still being translated, so these tests check the language through
``<html lang>`` and the topic names (which come from the database), never through translated
interface strings.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import app_config as app_config
from browser_support import live_server as live_server
from browser_support import live_server_settings, screenshot
from browser_support import new_page as new_page
from browser_support import page as page
from browser_support import sqlite_only as sqlite_only
from conftest import free_port, run_worker
from playwright.sync_api import expect

from preference_center.mail import devmailbox
from preference_center.services import system, topics

pytestmark = pytest.mark.browser


@pytest.fixture
def seeded(app: Any) -> None:
    """The three example topics, named in nl, fr and en."""
    with app.app_context():
        topics.seed_examples()


@pytest.mark.parametrize(
    ("locale", "language", "topic_name"),
    [
        ("nl-BE", "nl", "Maandelijkse nieuwsbrief"),
        ("fr-BE", "fr", "Newsletter mensuelle"),
        ("en-GB", "en", "Monthly newsletter"),
    ],
)
def test_the_start_page_speaks_the_language_the_browser_asks_for(
    live_server, new_page, seeded, locale, language, topic_name
):
    page = new_page(locale=locale)
    page.goto(live_server.url + "/")

    expect(page.locator("html")).to_have_attribute("lang", language)
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    expect(page.locator(".choices label").first).to_have_text(topic_name)
    # The switcher marks the current language and links to the two others.
    expect(page.locator(".languages [aria-current]")).to_have_attribute("lang", language)
    expect(page.locator(".languages a")).to_have_count(2)
    screenshot(page, f"start-{language}")


def test_choosing_french_from_a_dutch_page_sticks_on_the_next_pages(live_server, new_page, seeded):
    page = new_page(locale="nl-BE")
    page.goto(live_server.url + "/")
    expect(page.locator("html")).to_have_attribute("lang", "nl")

    page.get_by_role("link", name="Français").click()
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(page.locator(".choices label").first).to_have_text("Newsletter mensuelle")

    # Back to the start page without ?lang: the session remembers, Accept-Language is nl.
    page.locator(".brand").click()
    page.wait_for_url(live_server.url + "/")
    expect(page.locator("html")).to_have_attribute("lang", "fr")

    page.reload()
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(page.locator(".choices label").first).to_have_text("Newsletter mensuelle")


def test_the_start_page_fits_a_320_pixel_wide_screen_without_horizontal_scrolling(
    live_server, new_page, seeded
):
    # Dutch: the longest words, and the descriptions that wrap the most.
    page = new_page(locale="nl-BE", viewport={"width": 320, "height": 640})
    page.goto(live_server.url + "/")

    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= 320, f"the page is {scroll_width}px wide on a 320px screen"
    for name in ("Français", "English"):
        link = page.get_by_role("link", name=name)
        expect(link).to_be_visible()
        box = link.bounding_box()
        assert box is not None
        assert box["x"] >= 0 and box["x"] + box["width"] <= 320, f"{name!r} is off-screen: {box}"
    screenshot(page, "start-320px")


def test_the_first_tab_press_focuses_the_skip_to_content_link(live_server, page):
    page.goto(live_server.url + "/")

    page.keyboard.press("Tab")

    skip = page.locator("a.skip")
    expect(skip).to_be_focused()
    expect(skip).to_have_attribute("href", "#main")
    box = skip.bounding_box()
    assert box is not None and box["x"] >= 0, f"the focused skip link is off-screen: {box}"
    page.keyboard.press("Enter")
    page.wait_for_url(live_server.url + "/#main")


def deliver_test_email(app: Any, address: str) -> Any:
    """Queue the test email (asked for in Dutch) and run the outbox worker once."""
    with app.app_context():
        system.send_test_message(address, "nl")
    return run_worker(app)


class TestDevelopmentMailbox:
    """An app in debug mode with the development mailbox on, and its SMTP catcher running."""

    @pytest.fixture
    def mailbox_port(self) -> int:
        return free_port()

    @pytest.fixture
    def app_config(self, mailbox_port: int) -> dict[str, Any]:
        # DEV_MAILBOX only counts with DEBUG on; it then points MAIL_PORT at DEV_MAILBOX_PORT.
        return {
            **live_server_settings(),
            "DEBUG": True,
            "DEV_MAILBOX": True,
            "DEV_MAILBOX_PORT": mailbox_port,
        }

    @pytest.fixture
    def catcher(self, app: Any, mailbox_port: int, tmp_path: Path) -> Iterator[Any]:
        # The Maildir lives in the instance folder; use a new one, not the developer's.
        app.instance_path = str(tmp_path / "instance")
        assert app.config["MAIL_PORT"] == mailbox_port  # the worker delivers to the catcher
        controller = devmailbox.serve(app, "127.0.0.1", mailbox_port)
        yield controller
        controller.stop()

    def test_an_email_the_service_sent_can_be_read_in_the_development_mailbox(
        self, app, catcher, live_server, page
    ):
        # The instance folder is new, as after a fresh checkout: the catcher must create its
        # Maildir (it once made the folder without tmp/, new/ and cur/ and answered 500).
        report = deliver_test_email(app, "someone@example.org")
        assert report.sent == 1, report

        page.goto(live_server.url + "/dev/mailbox")
        row = page.locator(".mailbox tbody tr")
        expect(row).to_have_count(1)
        expect(row.locator("td").nth(1)).to_have_text("someone@example.org")
        subject_link = row.get_by_role("link")
        subject = subject_link.inner_text()
        assert subject.strip()
        subject_link.click()

        expect(page.get_by_role("heading", level=1)).to_have_text(subject)
        text = page.locator("pre.mail-text")
        expect(text).to_be_visible()
        expect(text).to_contain_text("someone@example.org")
        expect(page.locator("iframe.mail-html")).to_be_visible()
        screenshot(page, "dev-mailbox")

"""The admin's sync page in a real browser: see the consumers, add a webhook, in French."""

from __future__ import annotations

from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from browser_support import app_config as app_config
from browser_support import live_server as live_server
from browser_support import new_page as new_page
from browser_support import screenshot
from browser_support import sqlite_only as sqlite_only
from builders import seed_topics
from flask_babel import force_locale, gettext
from playwright.sync_api import expect
from sync_support import new_token
from test_admin import PASSWORD, make_user

from preference_center.extensions import db
from preference_center.services import webhooks

pytestmark = pytest.mark.browser

ADMIN = "admin@example.be"
RECEIVER = "https://lijst.example.be/hooks/preferences"


def fr(app: Any, message: str, **variables: Any) -> str:
    with app.test_request_context(), force_locale("fr"):
        return gettext(message, **variables)


def test_an_admin_sees_who_follows_the_feed_and_adds_a_webhook(app, live_server, new_page):
    seed_topics(app)
    make_user(app, ADMIN, "admin")
    new_token(app, "brevo")
    page = new_page(locale="fr-BE")
    page.goto(live_server.url + "/admin/login")
    page.locator("#email").fill(ADMIN)
    page.locator("#password").fill(PASSWORD)
    page.locator("main form.signup button[type=submit]").click()

    page.get_by_role("link", name=fr(app, "Sync"), exact=True).click()
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_have_text(fr(app, "Sync with the mailing list"))
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(page.locator("table.mailbox")).to_contain_text("brevo")

    form = page.locator("main form.signup")
    form.locator("#url").fill(RECEIVER)
    form.locator("#secret").fill("un-secret-partage-assez-long")
    form.locator("#topics").select_option("newsletter")
    form.locator("button[type=submit]").click()
    added = fr(app, "The webhook is added; it receives the feed from the beginning.")
    expect(page.get_by_text(added, exact=True)).to_be_visible()
    expect(page.get_by_role("heading", level=3)).to_have_text(RECEIVER)
    screenshot(page, "admin-sync-fr")
    with app.app_context():
        [hook] = webhooks.listing()
        assert hook.url == RECEIVER and hook.topic_ids and len(hook.topic_ids) == 1
        db.session.remove()

    results = Axe().run(page)
    serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == [], [v["id"] for v in serious]

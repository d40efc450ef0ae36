"""The marketer's import walked in a real browser: sign in, upload, map, import, ask, confirm.

A marketer signs in, uploads a Windows-1252 event list whose columns are in an unusual order,
corrects the column mapping on the preview, imports (the test runs the worker's job), downloads
the per-row report, sends the permission email, and sees a recipient's "yes" in the funnel.
Expected interface strings are rendered from the catalogues (never typed here), so the tests
follow the translators but still catch English left on a Dutch page.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from babel.messages.pofile import read_po
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
from test_admin import PASSWORD, make_user

from preference_center.config import TRANSLATIONS_DIR
from preference_center.extensions import db
from preference_center.models import (
    Contact,
    ImportBatch,
    ImportStatus,
    Subscription,
    SubscriptionStatus,
)
from preference_center.services import imports, repermission
from preference_center.services.imports import Provenance

pytestmark = pytest.mark.browser

MARKETER = "anna@example.be"
EVENT = "Horeca Expo Gent"
EVENT_DATE = "2026-11-16"
#: Name first, company second, address last; Windows-1252 with accents, as Excel writes it.
ROWS = [
    ("Naam", "Bedrijf", "E-mailadres"),
    ("Jan", "Peeters NV", "jan@example.be"),
    ("Marie", "Brasserie Café Zoë", "marie@example.be"),
    ("Één", "Bakkerij Janssens", "een@example.be"),
    ("Fout", "", "geen-adres"),
]
GOOD = ["jan@example.be", "marie@example.be", "een@example.be"]
COLUMN = {"name": 0, "company": 1, "email": 2}


# --- helpers ------------------------------------------------------------------------------


def translated(app: Any, language: str, message: str, **variables: Any) -> str:
    """``message`` as the app renders it in ``language`` (from the compiled catalogue)."""
    with app.test_request_context(), force_locale(language):
        return gettext(message, **variables)


@functools.cache
def dutch_catalogue() -> dict[str, str]:
    with (TRANSLATIONS_DIR / "nl" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return {m.id: m.string for m in read_po(handle, locale="nl") if isinstance(m.id, str)}


def nl(app: Any, message: str, **variables: Any) -> str:
    """``message`` in Dutch; fails when the catalogue has no Dutch for it."""
    assert dutch_catalogue().get(message), f"no Dutch translation for {message!r}"
    return translated(app, "nl", message, **variables)


def plural_nl(app: Any, singular: str, plural: str, number: int) -> str:
    """A plural message in Dutch, as the page renders it."""
    from flask_babel import force_locale, ngettext

    with app.test_request_context(), force_locale("nl"):
        return ngettext(singular, plural, number)


def heading(page: Any) -> Any:
    return page.get_by_role("heading", level=1)


def expect_dutch(page: Any) -> None:
    expect(page.locator("html")).to_have_attribute("lang", "nl")


def event_list(tmp_path: Path) -> Path:
    path = tmp_path / "horeca-expo-gent.csv"
    text = "".join(";".join(row) + "\r\n" for row in ROWS)
    path.write_bytes(text.encode("cp1252"))
    return path


def staff_form(page: Any) -> Any:
    """The page's own form (the staff menu has a sign-out form too)."""
    return page.locator("main form.signup")


def fill_sign_in_form(page: Any, live_server: Any) -> None:
    """Open /admin/login and type the marketer's address and password (not sent yet)."""
    page.goto(live_server.url + "/admin/login")
    page.locator("#email").fill(MARKETER)
    page.locator("#password").fill(PASSWORD)


def table_value(page: Any, label: str) -> Any:
    """The cell next to the row heading ``label`` in the page's tables (exactly one)."""
    return (
        page.locator("table.mailbox tr")
        .filter(has=page.get_by_role("rowheader", name=label, exact=True))
        .locator("td")
    )


def rows(app: Any, model: Any, *where: Any) -> list[Any]:
    with app.app_context():
        found = list(db.session.scalars(select(model).where(*where)))
        db.session.expunge_all()
        return found


# --- the whole flow -----------------------------------------------------------------------


def test_a_marketer_uploads_an_event_list_maps_its_columns_imports_and_sees_a_confirmation(
    app, smtp, live_server, new_page, tmp_path
):
    seed_topics(app)
    make_user(app, MARKETER, "marketer")
    page = new_page(locale="nl-BE")

    # 1. Sign in with the form.
    fill_sign_in_form(page, live_server)
    expect_dutch(page)
    expect(heading(page)).to_have_text(nl(app, "Staff sign-in"))
    screenshot(page, "admin-login-nl")
    staff_form(page).locator("button[type=submit]").click()
    expect(heading(page)).to_have_text(nl(app, "Overview"))

    # 2. Imports, then "upload an event list": provenance and the file.
    page.get_by_role("link", name=nl(app, "Imports"), exact=True).click()
    expect(heading(page)).to_have_text(nl(app, "Imports"))
    page.get_by_role("link", name=nl(app, "Upload an event list"), exact=True).click()
    expect(heading(page)).to_have_text(nl(app, "Upload an event list"))
    expect_dutch(page)
    page.locator("#event_name").fill(EVENT)
    page.locator("#event_date").fill(EVENT_DATE)
    page.locator("#collected_by").select_option("badge-scan")
    page.locator("#language").select_option("nl")
    page.set_input_files("#file", str(event_list(tmp_path)))
    screenshot(page, "admin-upload-nl")
    staff_form(page).locator("button[type=submit]").click()

    # 3. The preview: the guesses, then the marketer's own choices.
    expect(heading(page)).to_have_text(nl(app, "Check the columns"))
    assert re.search(r"/admin/imports/\d+/preview$", page.url), page.url
    preview_url = page.url
    expect(page.locator("#encoding")).to_have_value("cp1252")
    expect(page.locator("#delimiter")).to_have_value(";")
    expect(page.locator("#map-email")).to_have_value(str(COLUMN["email"]))
    headers = page.locator("table.mailbox thead th")
    expect(headers).to_have_text([h for h in ROWS[0]])
    page.locator("#map-first_name").select_option(str(COLUMN["name"]))
    page.locator("#map-company").select_option(str(COLUMN["company"]))
    page.locator("#map-email").select_option(str(COLUMN["email"]))
    page.locator("button[name=action][value=apply]").click()

    expect(heading(page)).to_have_text(nl(app, "Check the columns"))
    assert page.url == preview_url
    expect(page.locator("#map-first_name")).to_have_value(str(COLUMN["name"]))
    expect(page.locator("#map-company")).to_have_value(str(COLUMN["company"]))
    expect(page.locator("#map-email")).to_have_value(str(COLUMN["email"]))
    first_rows = page.locator("table.mailbox tbody tr")
    expect(first_rows).to_have_count(len(ROWS) - 1)
    expect(first_rows.nth(1).locator("td")).to_have_text(list(ROWS[2]))  # Windows-1252 read right
    expect(first_rows.nth(2).locator("td")).to_have_text(list(ROWS[3]))
    screenshot(page, "admin-preview-nl")
    page.locator("button[name=action][value=import]").click()

    # 4. The import runs in the worker; the batch page shows the report.
    assert re.search(r"/admin/imports/\d+$", page.url), page.url
    batch_url = page.url
    expect(page.locator("main")).to_contain_text(nl(app, "waiting to be imported"))
    with app.app_context():
        assert imports.run_queued() is not None
    page.goto(batch_url)
    status = page.locator("main p").filter(has=page.locator("strong"))
    expect(status).to_contain_text(nl(app, "imported"))
    expect(table_value(page, nl(app, "New: will be asked for permission"))).to_have_text("3")
    expect(table_value(page, nl(app, "Invalid address"))).to_have_text("1")
    expect(table_value(page, nl(app, "Twice in the file"))).to_have_text("0")

    with page.expect_download() as download_info:
        page.get_by_role("link", name=nl(app, "Download the report for every row (CSV)")).click()
    download = download_info.value
    assert download.suggested_filename.endswith("-report.csv"), download.suggested_filename
    report = list(csv.DictReader(io.StringIO(Path(download.path()).read_text("utf-8"))))
    assert [(r["line"], r["email"], r["outcome"]) for r in report] == [
        ("2", "jan@example.be", "new"),
        ("3", "marie@example.be", "new"),
        ("4", "een@example.be", "new"),
        ("5", "geen-adres", "invalid"),
    ]
    assert report[3]["reason"], "an invalid row without its reason"

    contacts = {c.email: c for c in rows(app, Contact)}
    assert sorted(contacts) == sorted(GOOD)
    assert (contacts["marie@example.be"].first_name, contacts["marie@example.be"].company) == (
        "Marie",
        "Brasserie Café Zoë",
    )
    assert contacts["een@example.be"].first_name == "Één"
    assert rows(app, Subscription) == [], "an import subscribed someone"

    # 5. The permission email: a topic, the button, the worker, a recipient says yes.
    page.locator("#topic-newsletter").check()
    page.get_by_role("button", name=nl(app, "Send the permission email"), exact=True).click()
    expect(page.locator(".flash-success")).to_have_text(
        plural_nl(
            app,
            "%(num)d permission email is on its way.",
            "%(num)d permission emails are on their way.",
            3,
        )
    )
    run_worker(app)
    for address in GOOD:
        assert len(smtp.handler.to(address)) == 1, f"{address}: {len(smtp.handler.to(address))}"
    assert smtp.handler.to("geen-adres") == []
    [message] = smtp.handler.to("marie@example.be")
    assert message["Content-Language"] == "nl"
    text = message.get_body(("plain",)).get_content()
    assert EVENT in text
    links = re.findall(rf"{re.escape(live_server.url)}/confirm/\S+", text)
    assert len(links) == 1, text

    recipient = new_page(locale="nl-BE")
    recipient.goto(links[0])
    expect_dutch(recipient)
    expect(heading(recipient)).to_have_text(nl(app, "Confirm your subscription"))
    screenshot(recipient, "repermission-confirm-nl")
    recipient.get_by_role("button", name=nl(app, "Yes, subscribe me"), exact=True).click()
    expect(heading(recipient)).to_have_text(
        nl(app, "Thank you, %(name)s: you are subscribed", name="Marie")
    )
    [subscription] = rows(app, Subscription)
    assert subscription.contact_id == contacts["marie@example.be"].id
    assert subscription.status is SubscriptionStatus.SUBSCRIBED

    # 6. Back with the marketer: the confirmation in the funnel.
    page.goto(batch_url)
    expect_dutch(page)
    expect(page.locator("svg.funnel")).to_be_visible()
    expect(page.locator("svg.funnel rect")).to_have_count(7)
    expect(table_value(page, nl(app, "Confirmed"))).to_have_text("1")
    expect(table_value(page, nl(app, "Mailed"))).to_have_text("3")
    expect(table_value(page, nl(app, "Delivered"))).to_have_text("3")
    screenshot(page, "admin-batch-nl")


# --- a phone --------------------------------------------------------------------------------


def upload_as_service(app: Any, content: bytes) -> int:
    """A batch in preview, as the upload form leaves it."""
    provenance = Provenance.checked(EVENT, date.fromisoformat(EVENT_DATE), "badge-scan", MARKETER)
    with app.app_context():
        batch = imports.start_upload(
            io.BytesIO(content), filename="horeca-expo-gent.csv", provenance=provenance,
            language="nl",
        )  # fmt: skip
        return batch.id


def test_the_preview_and_batch_pages_fit_a_320_pixel_screen_without_sideways_scrolling(
    app, live_server, new_page, tmp_path
):
    seed_topics(app)
    make_user(app, MARKETER, "marketer")
    content = event_list(tmp_path).read_bytes()
    # A long unbroken header and cell: the table must scroll inside its box, not the page.
    wide = content.replace(b"Bedrijf", b"Bedrijfsnaam_volgens_KBO_inschrijving_2026")
    preview_id = upload_as_service(app, wide)
    imported_id = upload_as_service(app, content)
    with app.app_context():
        batch = db.session.get(ImportBatch, imported_id)
        imports.queue(batch)
        assert imports.run_queued() == imported_id
        assert db.session.get(ImportBatch, imported_id).status is ImportStatus.IMPORTED
        repermission.send(imported_id, ["newsletter"], actor=MARKETER)

    page = new_page(locale="nl-BE", viewport={"width": 320, "height": 640})
    fill_sign_in_form(page, live_server)
    staff_form(page).locator("button[type=submit]").click()
    expect(heading(page)).to_have_text(nl(app, "Overview"))

    pages = {
        "admin-preview-320px": f"/admin/imports/{preview_id}/preview",
        "admin-batch-320px": f"/admin/imports/{imported_id}",
    }
    for name, path in pages.items():
        page.goto(live_server.url + path)
        expect_dutch(page)
        expect(page.locator("table.mailbox").first).to_be_visible()
        screenshot(page, name)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 320, f"{path} is {width}px wide on a 320px screen"
    # On a phone the chart is hidden (its labels would be unreadable); the table stays.
    expect(page.locator("svg.funnel")).to_be_hidden()

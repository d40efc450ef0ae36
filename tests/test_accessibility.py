"""Accessibility of the subscriber's pages, in a real browser, in Dutch, French and English.

For each page a subscriber meets (the signup form, the confirmation page and its result, the
preference page, what we hold, the one-click unsubscribe page and the page after it), three
checks:

* axe-core (bundled by the ``axe-playwright-python`` package) finds no violation with impact
  "serious" or "critical";
* the keyboard alone reaches the page's controls: the first Tab shows the skip link, Enter on
  it moves on to ``<main>``, and further Tabs visit the form controls and buttons in reading
  order, each with a visible focus indicator;
* at 320 CSS pixels wide (WCAG 1.4.10, reflow) nothing scrolls sideways; a screenshot of each
  page at that width is saved as ``a11y-<page>-<language>-320``.

Walking to a page means signing up, confirming and following links from emails, which is most
of the time a browser test takes. So one walk per language, through the browser and the
emails as a subscriber goes, measures every page on the way once, and the tests (one per check,
page and language, so each can fail, or be marked as a known failure, on its own) only read the
measurements. The walk serves its own app, on SQLite, for the whole module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from browser_support import PageFactory, live_server_settings, screenshot, serve
from browser_support import sqlite_only as sqlite_only
from conftest import _base_config, run_worker, start_smtp
from playwright.sync_api import expect

from preference_center import create_app
from preference_center.extensions import db
from preference_center.services import consent, topics

pytestmark = pytest.mark.browser

LANGUAGES = {"nl": "nl-BE", "fr": "fr-BE", "en": "en-GB"}
BLOCKING_IMPACTS = ("serious", "critical")
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 320, "height": 640}

#: Each page's own controls (CSS selectors), in the order Tab must visit them from <main>.
TAB_ORDER: dict[str, tuple[str, ...]] = {
    "signup": (
        "#email",
        "#first_name",
        "input[name=topics][value=newsletter]",
        "input[name=topics][value=events]",
        "input[name=topics][value=product-news]",
        "#language",
        "#consent",
        "form.signup button[type=submit]",
        "#manage-email",
        "#manage button[type=submit]",
    ),
    "confirm": ("main form button[type=submit]",),
    # The link to the person's preference page.
    "confirmed": ("main a[href*='/manage/']",),
    "preferences": (
        "#topic-newsletter",
        "#topic-events",
        "#frequency-events",
        "#topic-product-news",
        "#paused_until",
        "#language",
        "#first_name",
        "#preferences button[type=submit]",
        "form[action$='/leave'] button[type=submit]",
        "#new_email",
        "#email button[type=submit]",
        "main a[href$='/data']",
        "main a[href$='/forget']",
    ),
    "what-we-hold": ("main a[href*='/manage/']", "main form button[type=submit]"),
    "unsubscribe": ("main form button[type=submit]",),
    "unsubscribed": (
        "main a[href*='/manage/']",
        "input[name=reason][value=too-many]",
        "#comment",
        "main form button[type=submit]",
    ),
}
PAGES = tuple(TAB_ORDER)

#: (check, page, language) -> why it fails today; each is an xfail(strict=True) until fixed.
KNOWN_FAILURES: dict[tuple[str, str, str], str] = {}


# --- measuring a page -----------------------------------------------------------------------

FOCUSED = """(selectors) => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  return {
    element: Array.prototype.indexOf.call(document.querySelectorAll("*"), el),
    index: selectors.findIndex((s) => el.matches(s)),
    inMain: el.closest("main") !== null,
    outline: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0,
    outlineColor: style.outlineColor,
    background: getComputedStyle(document.body).backgroundColor,
    html: el.outerHTML.slice(0, 100),
  };
}"""


@dataclass
class Keyboard:
    skip_link_focused: bool
    skip_link_box: dict[str, float] | None
    #: What each Tab after the skip link focused (a date input's three parts count once).
    trail: list[dict[str, Any]] = field(default_factory=list)
    main_has_controls: bool = True

    def describe(self) -> str:
        return "\n".join(f"  {v['index']:>2} {v['html']}" for v in self.trail)


@dataclass
class Measured:
    violations: list[dict[str, Any]]
    keyboard: Keyboard
    width: int


#: Where a person's first Tab starts on a page they just arrived at: its top. Chromium keeps
#: the point of the last click across a form's POST instead, so the first Tab on the page that
#: answers it would start from where the button was.
FROM_THE_TOP = """() => {
  const body = document.body;
  body.setAttribute("tabindex", "-1");
  body.focus();
  body.removeAttribute("tabindex");
}"""


def use_the_keyboard(page: Any, expected: tuple[str, ...]) -> Keyboard:
    page.evaluate(FROM_THE_TOP)
    page.keyboard.press("Tab")
    skip = page.locator("a.skip")
    keyboard = Keyboard(
        skip_link_focused=skip.evaluate("el => el === document.activeElement"),
        skip_link_box=skip.bounding_box(),
    )
    page.keyboard.press("Enter")
    keyboard.main_has_controls = page.locator("main").evaluate(
        "m => m.querySelector('a[href], button, input:not([type=hidden]), select, textarea') !== null"
    )
    for _ in range(len(expected) + 8 if expected else 0):
        page.keyboard.press("Tab")
        now = page.evaluate(FOCUSED, list(expected))
        if not keyboard.trail or now["element"] != keyboard.trail[-1]["element"]:
            keyboard.trail.append(now)
        if now["index"] == len(expected) - 1:
            break
    return keyboard


def measure(page: Any, name: str, language: str) -> Measured:
    """axe, the keyboard and the width at 320px of the page the browser shows now."""
    expect(page.locator("html")).to_have_attribute("lang", language)
    violations = Axe().run(page).response["violations"]
    keyboard = use_the_keyboard(page, TAB_ORDER[name])
    page.set_viewport_size(NARROW)
    width = page.evaluate("document.documentElement.scrollWidth")
    screenshot(page, f"a11y-{name}-{language}-320")
    page.set_viewport_size(WIDE)
    return Measured(violations, keyboard, width)


# --- one walk per language ------------------------------------------------------------------


@dataclass
class Site:
    app: Any
    smtp: Any
    url: str
    pages: PageFactory
    walks: dict[str, dict[str, Measured]] = field(default_factory=dict)
    broken: dict[str, BaseException] = field(default_factory=dict)

    def deliver(self, email: str) -> Any:
        """Run the outbox worker once; the single email it sent to ``email``."""
        before = len(self.smtp.handler.to(email))
        report = run_worker(self.app)
        received = self.smtp.handler.to(email)
        assert len(received) == before + 1, (report, [m["Subject"] for m in received])
        return received[-1]

    def link(self, message: Any, kind: str) -> str:
        """The one absolute ``/<kind>/...`` URL in an email's text part."""
        text = message.get_body(("plain",)).get_content()
        found = re.findall(rf"{re.escape(self.url)}/{kind}/\S+", text)
        assert len(found) == 1, f"expected one /{kind}/ link, found {found}:\n{text}"
        return found[0]

    def measured(self, name: str, language: str) -> Measured:
        if language not in self.walks and language not in self.broken:
            self.walks[language] = {}
            try:
                self.walk(language, self.walks[language])
            except Exception as exc:  # every page after this one is reported with the cause
                self.broken[language] = exc
        if name not in self.walks[language]:
            raise AssertionError(
                f"the {language} walk broke before the {name} page"
            ) from self.broken.get(language)
        return self.walks[language][name]

    def walk(self, language: str, measured: dict[str, Measured]) -> None:
        page = self.pages(locale=LANGUAGES[language], viewport=WIDE)
        email = f"a11y.{language}@example.be"
        button = page.locator("main form button[type=submit]")

        def arrive(url: str) -> None:
            response = page.goto(url)
            assert response.status == 200, f"{url}: {response.status}"

        def press(locator: Any) -> None:
            """Send a form, and wait for the page its POST answers with."""
            with page.expect_response(lambda r: r.request.method == "POST"):
                locator.click()
            page.wait_for_load_state()

        arrive(self.url + "/")
        measured["signup"] = measure(page, "signup", language)
        page.locator("#email").fill(email)
        page.locator(".choices input[value='newsletter']").check()
        page.locator(".choices input[value='events']").check()
        page.locator("#consent").check()
        press(page.locator("form.signup button[type=submit]"))

        arrive(self.link(self.deliver(email), "confirm"))
        measured["confirm"] = measure(page, "confirm", language)
        press(button)
        measured["confirmed"] = measure(page, "confirmed", language)

        welcome = self.deliver(email)
        arrive(self.link(welcome, "manage"))
        measured["preferences"] = measure(page, "preferences", language)
        page.locator("main a[href$='/data']").click()
        page.wait_for_url("**/data")
        measured["what-we-hold"] = measure(page, "what-we-hold", language)

        arrive(self.link(welcome, "u"))
        measured["unsubscribe"] = measure(page, "unsubscribe", language)
        press(button)
        measured["unsubscribed"] = measure(page, "unsubscribed", language)


@pytest.fixture(scope="module")
def site(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    database = Path(tmp_path_factory.mktemp("a11y")) / "a11y.sqlite3"
    smtp = start_smtp()
    app = create_app(_base_config(f"sqlite:///{database}", smtp.port, **live_server_settings()))
    with app.app_context():
        db.create_all()
        consent.seed_defaults()
        topics.seed_examples()
        db.session.remove()
    pages = PageFactory(browser)
    try:
        with serve(app) as server:
            yield Site(app, smtp, server.url, pages)
    finally:
        smtp.stop()
        with app.app_context():
            db.engine.dispose()
        pages.close()  # fails the last test if a page had a script error or a CSP violation


def cases(check: str) -> list[Any]:
    """Every page in every language, with the known failures of ``check`` marked."""
    params = []
    for name in PAGES:
        for language in LANGUAGES:
            reason = KNOWN_FAILURES.get((check, name, language))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param(name, language, id=f"{name}-{language}", marks=marks))
    return params


# --- the checks -----------------------------------------------------------------------------


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for violation in violations:
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"]:
            lines.append(f"    {', '.join(map(str, node['target']))}: {node['html'][:160]}")
    return "\n".join(lines)


@pytest.mark.parametrize(("name", "language"), cases("axe"))
def test_axe_finds_no_serious_or_critical_violation(site, name, language):
    violations = site.measured(name, language).violations

    blocking = [v for v in violations if v["impact"] in BLOCKING_IMPACTS]
    assert not blocking, f"axe on the {name} page ({language}):\n{describe(blocking)}"


@pytest.mark.parametrize(("name", "language"), cases("keyboard"))
def test_the_keyboard_alone_reaches_every_control_in_reading_order(site, name, language):
    keyboard = site.measured(name, language).keyboard
    expected = TAB_ORDER[name]

    assert keyboard.skip_link_focused, "the first Tab does not reach the skip link"
    box = keyboard.skip_link_box
    assert box and box["x"] >= 0 and box["y"] >= 0, f"the focused skip link is off screen: {box}"
    assert keyboard.main_has_controls == bool(expected)
    trail = keyboard.describe()
    assert [v["index"] for v in keyboard.trail] == list(range(len(expected))), (
        f"Tab after the skip link on the {name} page ({language}) visited:\n{trail}"
    )
    assert all(v["inMain"] for v in keyboard.trail), trail
    unmarked = [v["html"] for v in keyboard.trail if not v["outline"]]
    assert not unmarked, f"focused without a visible outline: {unmarked}"


def luminance(css_color: str) -> float:
    """The relative luminance (WCAG 2) of an opaque ``rgb(r, g, b)`` computed colour."""
    red, green, blue = (int(c) / 255 for c in re.findall(r"\d+", css_color)[:3])
    linear = [
        c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (red, green, blue)
    ]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(first: str, second: str) -> float:
    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_focus_outline_stands_out_at_least_3_to_1_from_the_page_around_it(site):
    weak: dict[tuple[str, str], set[str]] = {}
    for language in LANGUAGES:
        for name in PAGES:
            for visited in site.measured(name, language).keyboard.trail:
                colours = (visited["outlineColor"], visited["background"])
                if contrast(*colours) < 3:
                    weak.setdefault(colours, set()).add(f"{name}-{language}")
    assert not weak, "focus outlines below 3:1 against the page: " + "; ".join(
        f"{outline} on {page} is {contrast(outline, page):.2f}:1 ({', '.join(sorted(where))})"
        for (outline, page), where in weak.items()
    )


@pytest.mark.parametrize(("name", "language"), cases("reflow"))
def test_the_page_fits_320_pixels_without_scrolling_sideways(site, name, language):
    width = site.measured(name, language).width

    assert width <= NARROW["width"], f"the {name} page ({language}) is {width}px wide at 320px"

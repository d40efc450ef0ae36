"""Real-browser tests: the app served over HTTP on 127.0.0.1, driven by Debian's chromium.

A browser test module imports the fixtures it uses, and the ones they build on (pytest only
sees fixtures that are names in the module). Import each as ``name as name``: ruff then reads
it as a deliberate re-export, so neither F401 (unused import) nor F811 (a test parameter
redefining the import) fires, without a ``noqa`` on every test::

    from browser_support import app_config as app_config
    from browser_support import live_server as live_server
    from browser_support import new_page as new_page
    from browser_support import page as page
    from browser_support import sqlite_only as sqlite_only
    from browser_support import screenshot

What each one does:

``app_config``
    Overrides conftest's ``app_config`` so that the shared ``app`` fixture can be served over
    plain HTTP: ``SERVER_NAME`` is ``127.0.0.1:<a free port>`` (so ``TRUSTED_HOSTS`` and every
    ``url_for(..., _external=True)`` match the address the browser uses), the scheme is
    ``http`` and the session cookie is not ``Secure``. A test (or a class of tests) that needs
    more settings overrides ``app_config`` again and starts from :func:`live_server_settings`::

        @pytest.fixture
        def app_config():
            return {**live_server_settings(), "DEBUG": True}

    The port lives in the app's own config, so there is no second source of truth:
    ``live_server`` reads it back from ``SERVER_NAME``.
``live_server``
    Serves conftest's ``app`` with werkzeug's threaded server in a daemon thread and yields a
    :class:`LiveServer` (``.url`` is ``http://127.0.0.1:PORT``); shut down at teardown.
``browser``
    (Provided through conftest.py, so that there is one per run; do not import it.)
    One headless chromium for the whole run (``/usr/bin/chromium``; ``playwright install``
    cannot download browsers here). Skips with the reason when chromium is missing, except
    under ``CI=true``, where a missing browser fails the run.
``page`` / ``new_page``
    A fresh browser context and page per test: 1280x800, ``en-GB``, Brussels time. ``new_page``
    is a factory for tests that need other context options (``new_page(locale="nl-BE")``,
    another viewport, ...). Every page fails its test at teardown if it had an uncaught
    script error or a Content-Security-Policy violation: the CSP allows nothing but our own
    origin, and a violation means something on the page silently did not load.
``sqlite_only`` (autouse)
    Browser tests run once, on SQLite: the PostgreSQL variant of the parametrized ``backend``
    is skipped before its database is touched.

``screenshot(page, name)`` saves a full-page PNG to ``test-output/screenshots/<name>.png``
for people to look at (``test-output/`` is git-ignored).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import OUTPUT_DIR, free_port
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS_DIR = OUTPUT_DIR / "screenshots"
HOST = "127.0.0.1"
#: Playwright's default is 30 s; a local page that takes longer is a failure worth seeing soon.
DEFAULT_TIMEOUT_MS = 10_000
DEFAULT_CONTEXT_OPTIONS: dict[str, Any] = {
    "viewport": {"width": 1280, "height": 800},
    "locale": "en-GB",
    "timezone_id": "Europe/Brussels",
}


# --- the live server ----------------------------------------------------------------------


def live_server_settings(port: int | None = None) -> dict[str, Any]:
    """Settings that let an app be served at ``http://127.0.0.1:<port>`` (a free port if None)."""
    return {
        "SERVER_NAME": f"{HOST}:{port or free_port()}",
        "PREFERRED_URL_SCHEME": "http",
        "SESSION_COOKIE_SECURE": False,
    }


@pytest.fixture
def app_config() -> dict[str, Any]:
    """conftest's ``app_config``, made servable by ``live_server``; see the module docstring."""
    return live_server_settings()


@dataclass(frozen=True)
class LiveServer:
    url: str
    server: BaseWSGIServer

    def __str__(self) -> str:
        return self.url


def _port_of(app: Flask) -> int:
    server_name = str(app.config.get("SERVER_NAME") or "")
    host, _, port = server_name.partition(":")
    if host != HOST or not port.isdigit():
        raise RuntimeError(
            f"live_server serves the app at http://{HOST}:PORT, but SERVER_NAME is "
            f"{server_name!r}. Import app_config from browser_support in the test module, or "
            "build the app's settings with browser_support.live_server_settings()."
        )
    return int(port)


@contextmanager
def serve(app: Flask) -> Iterator[LiveServer]:
    """Serve ``app`` on the port in its ``SERVER_NAME`` until the block ends."""
    server = make_server(HOST, _port_of(app), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://{HOST}:{server.server_port}", server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def live_server(app: Flask) -> Iterator[LiveServer]:
    """conftest's ``app``, served over HTTP for the duration of the test."""
    with serve(app) as server:
        yield server


@pytest.fixture(autouse=True)
def sqlite_only(backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("browser tests run once, on SQLite")


# --- the browser --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian chromium, launched once per test run."""
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        reason = f"browser tests need chromium at {CHROMIUM} (Debian: apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()
    finally:
        playwright.stop()


class PageFactory:
    """Opens pages in fresh contexts, records their script errors, and closes them all."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.contexts: list[Any] = []
        self.problems: list[str] = []

    def __call__(self, **context_options: Any) -> Any:
        context = self.browser.new_context(**{**DEFAULT_CONTEXT_OPTIONS, **context_options})
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: self.problems.append(f"{page.url}: {error}"))
        page.on("console", self._on_console(page))
        return page

    def _on_console(self, page: Any) -> Callable[[Any], None]:
        def record(message: Any) -> None:
            if message.type == "error" and "Content Security Policy" in message.text:
                self.problems.append(f"{page.url}: {message.text}")

        return record

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        if self.problems:
            pytest.fail(
                "the browser reported script errors or CSP violations:\n"
                + "\n".join(self.problems),
                pytrace=False,
            )


@pytest.fixture
def new_page(browser: Any) -> Iterator[PageFactory]:
    """``new_page(**context_options)`` opens a page in a fresh context; all closed at teardown."""
    factory = PageFactory(browser)
    yield factory
    factory.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page in a fresh 1280x800 ``en-GB`` context, closed at teardown."""
    factory = PageFactory(browser)
    yield factory()
    factory.close()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page PNG of ``page`` as ``test-output/screenshots/<name>.png``."""
    SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

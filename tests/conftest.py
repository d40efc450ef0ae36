"""Fixtures: an app per test, a real SMTP server on a free port, SQLite and PostgreSQL.

Every test that takes ``app`` runs once per available database backend: SQLite always, and
PostgreSQL when ``TEST_DATABASE_URL`` is set (a throwaway database is created for the run and
dropped after). With ``REQUIRE_POSTGRES=1`` a missing PostgreSQL fails the run instead of
skipping, which is how CI runs.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from preference_center import create_app
from preference_center.extensions import db
from preference_center.services import consent

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"
SHARED_TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
OUTPUT_DIR = Path(__file__).resolve().parents[1] / "test-output"

BACKENDS = ["sqlite"] + (["postgresql"] if TEST_DATABASE_URL else [])


def pytest_report_header(config: pytest.Config) -> list[str]:
    if TEST_DATABASE_URL:
        return [f"database backends: {', '.join(BACKENDS)}"]
    return ["database backends: sqlite (set TEST_DATABASE_URL to run PostgreSQL tests too)"]


def pytest_sessionstart(session: pytest.Session) -> None:
    if REQUIRE_POSTGRES and not TEST_DATABASE_URL:
        raise pytest.UsageError("REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set")


# --- PostgreSQL ---------------------------------------------------------------------------


def postgres_or_skip() -> str:
    """The admin URL of the PostgreSQL server, or skip (fail under REQUIRE_POSTGRES)."""
    if not TEST_DATABASE_URL:
        reason = "PostgreSQL tests need TEST_DATABASE_URL (e.g. postgresql+psycopg://postgres@127.0.0.1/test)"
        if REQUIRE_POSTGRES:
            pytest.fail(reason)
        pytest.skip(reason)
    return TEST_DATABASE_URL


def create_throwaway_database(admin_url: str) -> str:
    """Create an empty database next to ``admin_url``'s and return its URL."""
    url = make_url(admin_url)
    name = f"pc_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, database_url: str) -> None:
    name = make_url(database_url).database
    engine = create_engine(make_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database for this test run, with the schema created once."""
    admin = postgres_or_skip()
    url = create_throwaway_database(admin)
    app = create_app(_base_config(url, port=1))
    with app.app_context():
        db.create_all()
        db.engine.dispose()
    yield url
    drop_database(admin, url)


def _truncate_all(app: Any) -> None:
    with app.app_context():
        tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
        with db.engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


# --- SMTP ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RecordingHandler:
    """An aiosmtpd handler that keeps messages and can be told to refuse some."""

    messages: list[EmailMessage] = field(default_factory=list)
    #: The bytes as received, for checks that parsing would change (DKIM, line lengths).
    raw: list[bytes] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    #: recipient address -> SMTP reply to RCPT TO, e.g. "550 5.1.1 No such user"
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    #: reply to DATA for every message, e.g. "451 4.3.0 Try again later"
    data_reply: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_reply:
            return self.data_reply
        with self.lock:
            self.messages.append(
                message_from_bytes(envelope.original_content, policy=policy.default)
            )
            self.raw.append(envelope.original_content)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        return [
            m
            for m, (_, rcpts) in zip(self.messages, self.envelopes, strict=True)
            if address in rcpts
        ]


@dataclass
class SMTPServer:
    host: str
    port: int
    handler: RecordingHandler
    controller: Controller

    running: bool = True

    @property
    def messages(self) -> list[EmailMessage]:
        return self.handler.messages

    def stop(self) -> None:
        """Stop listening: from now on connections are refused."""
        if self.running:
            self.controller.stop()
            self.running = False


def start_smtp(**controller_options: Any) -> SMTPServer:
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **controller_options)
    controller.start()
    return SMTPServer("127.0.0.1", port, handler, controller)


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    """A real SMTP server on a free local port; nothing ever reaches a real mailbox."""
    server = start_smtp()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def self_signed_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no system trusts, made with the openssl CLI."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class BlackholeServer:
    """Accepts TCP connections and never says a word: a hung SMTP server (catalogue E2)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def blackhole() -> Iterator[BlackholeServer]:
    server = BlackholeServer()
    yield server
    server.close()


# --- the application ----------------------------------------------------------------------


def _base_config(database_url: str, port: int, **overrides: Any) -> dict[str, Any]:
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-not-for-production",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SERVER_NAME": "prefs.example.be",
        "PREFERRED_URL_SCHEME": "https",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": port,
        "MAIL_TIMEOUT": 2.0,
        "MAIL_DEFAULT_SENDER": "Voorkeuren Test <news@prefs.example.be>",
        "RATELIMIT_STORAGE_URI": "memory://",
        # Tests post forms at machine speed; the bot tests set their own values.
        "SIGNUP_MIN_SECONDS": 0,
        "SIGNUP_RATE_LIMIT": "1000 per minute",
        "TOKEN_RATE_LIMIT": "1000 per minute",
    }
    config.update(overrides)
    return config


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'test.sqlite3'}"


@pytest.fixture
def app_config() -> dict[str, Any]:
    """Override in a test module (or parametrize) to change settings for its tests."""
    return {}


@pytest.fixture
def app(
    tmp_path: Path, database_url: str, smtp: SMTPServer, app_config: dict[str, Any], backend: str
) -> Iterator[Any]:
    # Each test its own instance folder: uploads and the development mailbox never mix.
    app = create_app(
        _base_config(database_url, smtp.port, **app_config),
        instance_path=str(tmp_path / "instance"),
    )
    if backend == "postgresql":
        _truncate_all(app)
    else:
        with app.app_context():
            db.create_all()
    with app.app_context():
        # Every installation publishes its consent texts (`flask consent-texts seed`).
        consent.seed_defaults()
        db.session.remove()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def runner(app: Any) -> Any:
    return app.test_cli_runner()


@pytest.fixture
def ctx(app: Any) -> Iterator[Any]:
    """An application context, for calling services directly."""
    with app.app_context():
        yield app
        db.session.rollback()


def run_worker(app: Any, **kwargs: Any) -> Any:
    """Drain the outbox once, the way `flask outbox work --once` does."""
    from preference_center.mail.outbox import Worker

    with app.app_context():
        return Worker(**kwargs).run(once=True)


def shared_testdata(*parts: str) -> Path:
    """A path under ../shared/testdata, or skip with the reason when it is not there."""
    path = SHARED_TESTDATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not found at {path} (it sits beside the checkout)")
    return path


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


# One chromium for the whole run: a session fixture imported into several modules would
# start one Playwright per module, and a second sync Playwright in one thread fails.
from browser_support import browser  # noqa: E402, F401

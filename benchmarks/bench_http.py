"""HTTP throughput and latency of the double opt-in pages under gunicorn, against a bare endpoint.

The issue: "start the app with gunicorn (2 workers) on PostgreSQL and on SQLite, and drive it
from a separate process with a load generator of your choice for a fixed number of requests:
GET the confirmation page, POST a confirmation (each with its own fresh token), POST a signup.
In the same run, drive a bare Flask endpoint under the same gunicorn settings that does one
comparable indexed read and one update through the same SQLAlchemy engine. Print requests per
second, p50 and p99 latency for each and the ratio to the bare endpoint. Goal: confirm POST at
least 0.5 of the bare endpoint; p99 under 50 ms at the measured rate."

A follow-up issue added, with the same method and baseline: "GET and POST of the preference
page and the one-click POST. Goal: each at least 0.5 of the bare endpoint; p99 under 50 ms at
the measured rate." Each preference-page POST and each one-click POST acts on a subscriber of
its own (confirmed before the clock starts), so every save finds the version its form carries
and every one-click POST really unsubscribes someone.

Why it is built this way:

* The servers are real ``gunicorn`` processes (``wsgi:app`` for the service, the bare app
  below for the baseline) with the same settings: sync workers, ``--workers`` of them (2 by
  default). They are configured only through ``FLASK_*`` variables, as in production. Both
  are up for the whole run but only one is driven at a time: each scenario runs in
  ``--rounds`` slices that alternate with slices of as many bare requests, and its ratio is
  taken against those. The machine is shared, and a baseline measured minutes before a
  scenario would compare it with other neighbours' load, not with the bare endpoint.
* The bare endpoint is the service's own app (``create_app``, so the same engine options,
  SQLite pragmas, pool and after-request hooks) plus one route that reads one signup request
  by its unique ``public_id`` and updates one column of it with a commit: the least any
  confirmation has to do. It is exempt from CSRF and rate limiting, which the real pages pay.
  Both sides pay the same gunicorn, connection and engine costs, so the ratio shows what the
  service's code adds to "Flask + SQLAlchemy + one indexed read and one write".
* The load generator is a closed loop: ``--concurrency`` client threads in a process of their
  own (spawned, not forked), each sending one request and waiting for its answer before
  sending the next. Two by default, one per sync worker: in a closed loop the latency is
  about connections / throughput, so more connections than workers only add time spent
  queueing behind the client's own requests, and the p99 goal is "at the measured rate". It speaks just enough HTTP/1.1 over raw sockets to stay cheap: gunicorn's
  sync workers close the connection after every response, so every request opens a new TCP
  connection, and its latency counts from ``connect`` to the last byte, time spent in the
  listen queue included. The client's own CPU time is measured and printed, so a client that
  became the bottleneck shows.
* Every timed request is a fresh one: each confirmation GET and POST carries its own token
  for its own pending request, each signup a new address (``bench-…@example.org``: reserved,
  nothing can ever be mailed). Everything is prepared before the clock starts, through the
  services (``request_subscription`` and ``tokens.make``), and a warm-up with its own data runs
  on every server before the timed requests, so template compilation and first connections
  are not measured.
* Like a person's browser, the POSTs carry the session cookie and CSRF token of one earlier
  page view (a Flask-WTF token is valid for every form of that session for an hour), and the
  signup form its signed ``started`` field. The confirmation GETs carry no cookie: a person
  usually opens the email's link in a browser that has no session yet, so each GET pays for a
  new session and CSRF token.
* A run is only a result when it is correct: any non-2xx answer fails the benchmark, every
  confirmation page must show its button, and afterwards the database must hold every POSTed
  confirmation as confirmed and one new signup request per signup POST (a signup that looked
  like a bot would get the same 200 page and store nothing).

Run it with ``make bench`` or directly with ``.venv/bin/python benchmarks/bench_http.py
[-n 2000] [-c 2] [--rounds 10] [--database-url URL] [--json] [--check]``. Client and servers share the
machine's CPUs, and so does a local PostgreSQL server: the figures are for the whole box.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import html
import http.client
import itertools
import json
import math
import multiprocessing
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from common import busy_warning, report, throwaway_database
from flask import Flask, abort
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from preference_center import create_app, tokens
from preference_center.extensions import csrf, db, limiter
from preference_center.models import (
    Contact,
    RequestStatus,
    SignupRequest,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from preference_center.services import consent, preferences, subscriptions, topics

#: run_all.py runs this script a second time with --database-url when BENCH_DATABASE_URL is set.
ACCEPTS_DATABASE_URL = True

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

RATIO_GOAL = 0.5  # confirm POST requests per second / bare endpoint requests per second
#: The preference-page scenarios, which have the same ratio goal of their own.
PAGE_SCENARIOS = ("manage GET", "manage POST", "one-click POST")
P99_GOAL_MS = 50.0  # for each of the service's scenarios
SECRET_KEY = "bench-http-secret-key-not-for-production"
LANGUAGE = "nl"
TOPIC = "newsletter"
#: Generous: a benchmark is not a denial-of-service attempt, and one client IP sends it all.
NO_LIMIT = "1000000 per minute"
#: Requests created and confirmed per worker before the timed run of each scenario.
WARMUP_PER_WORKER = 10
SERVER_START_TIMEOUT = 60.0
CLIENT_SOCKET_TIMEOUT = 30.0
CONFIRM_PAGE_MARKER = b'name="csrf_token"'
MANAGE_PAGE_MARKER = b'name="version"'
#: A saved preference page answers 303 (to the page again), which counts as success there.
SEE_OTHER = (303,)
BENCH_FIRST_NAME = "Bench"  # what every manage POST saves, so the save changes something

# --- the bare endpoint (served by gunicorn as ``bench_http:bare_app()``) ---------------------


def bare_app() -> Flask:
    """The service's app plus ``POST /bare/<public_id>``: one indexed read, one update.

    Built by ``create_app`` from the same ``FLASK_*`` settings as ``wsgi:app``, so the engine
    (pool, ``pool_pre_ping``, SQLite pragmas) and the after-request hooks are the service's own.
    """
    app = create_app()

    @limiter.exempt
    @csrf.exempt
    def bare(public_id: str) -> tuple[str, int, dict[str, str]]:
        request = db.session.scalar(
            select(SignupRequest).where(SignupRequest.public_id == public_id)
        )
        if request is None:
            abort(404)
        request.emailed_at = utcnow()
        db.session.commit()
        return "ok", 200, {"Content-Type": "text/plain; charset=utf-8"}

    app.add_url_rule("/bare/<public_id>", view_func=bare, methods=["POST"])
    return app


# --- settings ---------------------------------------------------------------------------------


def settings(database_url: str, port: int) -> dict[str, Any]:
    """The service's settings for the benchmark, the same in the servers and in the setup.

    Production-like (no TESTING, no DEBUG), over plain http on the loopback, with the limits
    that would stop one client IP from sending thousands of requests lifted.
    """
    return {
        "SECRET_KEY": SECRET_KEY,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SERVER_NAME": f"127.0.0.1:{port}",
        "PREFERRED_URL_SCHEME": "http",
        "SESSION_COOKIE_SECURE": False,
        "SIGNUP_MIN_SECONDS": 0,
        "SIGNUP_RATE_LIMIT": NO_LIMIT,
        "TOKEN_RATE_LIMIT": NO_LIMIT,
        "RATELIMIT_DEFAULT": NO_LIMIT,
        "RATELIMIT_STORAGE_URI": "memory://",
        # Every signup uses its own address; this only keeps a re-run from being throttled.
        "CONFIRM_EMAIL_INTERVAL": 0,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": 9,  # nothing is sent: no outbox worker runs
    }


def server_environment(database_url: str, port: int) -> dict[str, str]:
    """The environment of a gunicorn server: ours, minus any FLASK_* of the caller's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    # from_prefixed_env parses each value as JSON, so every value goes in as JSON.
    env.update({f"FLASK_{k}": json.dumps(v) for k, v in settings(database_url, port).items()})
    return env


# --- databases ------------------------------------------------------------------------------


def database(admin_url: str | None) -> AbstractContextManager[tuple[str, str]]:
    return throwaway_database(admin_url, "bench-http-")


# --- test data (prepared before any clock starts) -----------------------------------------


@dataclass(frozen=True)
class Subscriber:
    """A confirmed subscriber and what its links and preference form carry."""

    public_id: str  # the contact's
    manage_token: str
    unsubscribe_token: str
    prefs_version: int
    consent_text_id: int


@dataclass
class Dataset:
    """Confirmation tokens and request ids, split so that no two scenarios share a request."""

    #: (public_id, confirm token) of requests whose page is only shown (GET) and touched by
    #: the bare endpoint, which changes a column that page does not show.
    shown: list[tuple[str, str]]
    shown_warmup: list[tuple[str, str]]
    #: Requests that the confirm POSTs confirm, each exactly once.
    confirmed: list[tuple[str, str]]
    confirmed_warmup: list[tuple[str, str]]
    #: Confirmed subscribers whose preference page is only shown (GET).
    viewers: list[Subscriber] = field(default_factory=list)
    viewers_warmup: list[Subscriber] = field(default_factory=list)
    #: Confirmed subscribers whose preference page is saved (POST), each exactly once.
    savers: list[Subscriber] = field(default_factory=list)
    savers_warmup: list[Subscriber] = field(default_factory=list)
    #: Confirmed subscribers who leave by one-click POST, each exactly once.
    leavers: list[Subscriber] = field(default_factory=list)
    leavers_warmup: list[Subscriber] = field(default_factory=list)


def address(kind: str, index: int, run: str) -> str:
    """A unique address on example.org, which is reserved: nothing can ever reach a person."""
    return f"bench-{kind}-{run}-{index}@example.org"


#: The groups of subscribers that are confirmed before the clock starts.
SUBSCRIBER_GROUPS = ("viewer", "saver", "leaver")


def prepare(app: Flask, requests: int, warmup: int, run: str) -> Dataset:
    """Create the schema, topics, consent texts, the pending requests and confirmed
    subscribers; mint their tokens."""
    with app.app_context():
        db.create_all()
        topics.seed_examples()
        consent.seed_defaults()
        text_id = consent.current(LANGUAGE).id
        client = subscriptions.Client(ip="192.0.2.10", user_agent="bench-http setup")
        groups = {"shown": requests + warmup, "confirmed": requests + warmup}
        groups.update({kind: requests + warmup for kind in SUBSCRIBER_GROUPS})
        for kind, count in groups.items():
            for index in range(count):
                outcome = subscriptions.request_subscription(
                    address(kind, index, run),
                    topic_slugs=[TOPIC],
                    language=LANGUAGE,
                    consent_text_id=text_id,
                    client=client,
                )
                if outcome is not subscriptions.Outcome.EMAILED:
                    raise SystemExit(f"setup: a signup was {outcome.value}, not emailed")
        ids = dict(
            db.session.execute(
                select(Contact.email, SignupRequest.public_id).join(SignupRequest.contact)
            ).all()
        )

        def tokens_for(kind: str, indexes: range) -> list[tuple[str, str]]:
            pairs = []
            for index in indexes:
                public_id = ids[address(kind, index, run)]
                pairs.append((public_id, tokens.make(tokens.Purpose.CONFIRM, {"r": public_id})))
            return pairs

        # Confirm the subscribers' requests through the service, as their emails' links would.
        for kind in SUBSCRIBER_GROUPS:
            for index in range(requests + warmup):
                result = subscriptions.confirm(ids[address(kind, index, run)], client)
                if not result.newly_confirmed:
                    raise SystemExit(f"setup: a confirmation ended {result.state}")
        db.session.expire_all()
        contacts = {
            contact.email: contact
            for contact in db.session.scalars(
                select(Contact).where(Contact.email.like(f"bench-%-{run}-%@example.org"))
            )
        }

        def subscribers_for(kind: str, indexes: range) -> list[Subscriber]:
            found = []
            for index in indexes:
                contact = contacts[address(kind, index, run)]
                found.append(
                    Subscriber(
                        public_id=contact.public_id,
                        manage_token=tokens.make(
                            tokens.Purpose.MANAGE, preferences.manage_payload(contact)
                        ),
                        unsubscribe_token=tokens.make(
                            tokens.Purpose.UNSUBSCRIBE, {"c": contact.public_id, "t": None}
                        ),
                        prefs_version=contact.prefs_version,
                        consent_text_id=text_id,
                    )
                )
            return found

        timed, untimed = range(requests), range(requests, requests + warmup)
        dataset = Dataset(
            shown=tokens_for("shown", timed),
            shown_warmup=tokens_for("shown", untimed),
            confirmed=tokens_for("confirmed", timed),
            confirmed_warmup=tokens_for("confirmed", untimed),
            viewers=subscribers_for("viewer", timed),
            viewers_warmup=subscribers_for("viewer", untimed),
            savers=subscribers_for("saver", timed),
            savers_warmup=subscribers_for("saver", untimed),
            leavers=subscribers_for("leaver", timed),
            leavers_warmup=subscribers_for("leaver", untimed),
        )
        db.session.remove()
        db.engine.dispose()  # no connection (or SQLite lock) of ours while the servers run
    return dataset


# --- gunicorn -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One gunicorn master and its workers, started in a session of their own."""

    def __init__(self, app_spec: str, database_url: str, workers: int, log: Path) -> None:
        self.port = free_port()
        self.workers = workers
        url = make_url(database_url)
        #: Names the PostgreSQL backends whose CPU time is counted (None on SQLite).
        self.database_name = url.database if url.get_backend_name() == "postgresql" else None
        self._log = log
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(workers),
            "--worker-class",
            "sync",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--pythonpath",
            f"{ROOT},{HERE}",
            "--error-logfile",
            str(log),
            "--log-level",
            "warning",
            app_spec,
        ]
        with log.open("ab") as handle:
            self._process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=server_environment(database_url, self.port),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() reaches every worker
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self) -> None:
        """Wait until /health answers 200 and every worker is running."""
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise SystemExit(f"gunicorn exited ({self._process.returncode}):\n{self.log()}")
            try:
                status, _, _ = self.get("/health")
            except OSError:
                status = 0
            # Without /proc (not Linux) the workers cannot be counted: /health must do.
            if status == 200 and (not HAS_PROC or len(self.worker_pids()) == self.workers):
                return
            time.sleep(0.1)
        raise SystemExit(
            f"gunicorn did not answer within {SERVER_START_TIMEOUT:.0f} s:\n{self.log()}"
        )

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
        """One GET from this process: (status, body, Set-Cookie); for setup, never timed."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", path, headers={"Host": self.host, **(headers or {})})
            response = connection.getresponse()
            body = response.read().decode("utf-8")
            return response.status, body, response.getheader("Set-Cookie") or ""
        finally:
            connection.close()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        return children_of(self._process.pid)

    def log(self) -> str:
        try:
            return self._log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Graceful stop (SIGTERM to the master), then SIGKILL to its process group."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self._process.wait(30)
        # Whatever is left in the server's own process group (a master that did not stop, or
        # a worker whose master died) would still hold the port and the database.
        with suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()


@contextmanager
def running_server(app_spec: str, database_url: str, workers: int, log: Path) -> Iterator[Server]:
    server = Server(app_spec, database_url, workers, log)
    try:
        yield server
    finally:
        server.stop()


# --- CPU accounting (Linux /proc; zeros elsewhere) ----------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
HAS_PROC = Path("/proc/self/stat").exists()


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after it.
    return raw[raw.rindex(")") + 2 :].split()


def _pids() -> list[int]:
    if not HAS_PROC:
        return []
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def children_of(pid: int) -> list[int]:
    found = []
    for child in _pids():
        fields = _stat_fields(child)
        if fields and int(fields[1]) == pid:
            found.append(child)
    return found


def backends_of(database_name: str | None) -> list[int]:
    """The local PostgreSQL backends serving ``database_name`` (their title names it).

    Their CPU time is part of each request's cost; they serve only this run's throwaway
    database, so other users of the same server are not counted.
    """
    if not database_name:
        return []
    found = []
    for pid in _pids():
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"postgres:") and f" {database_name} ".encode() in title:
            found.append(pid)
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of the processes ``pids``, in seconds."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values[:8]) - idle, sum(values[:8])


# --- the load generator (a separate process) ----------------------------------------------


@dataclass
class ClientReport:
    """What the load generator measured; latencies in seconds, in request order."""

    seconds: float
    cpu_seconds: float
    latencies: list[float]
    statuses: list[int]
    missing_marker: int


def _exchange(port: int, payload: bytes) -> tuple[int, bytes]:
    """Send one request on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_SOCKET_TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(payload)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    try:
        return int(response[9:12]), response
    except ValueError:
        return 0, response


def drive(port: int, payloads: list[bytes], concurrency: int, marker: bytes | None) -> ClientReport:
    """Send every payload once with ``concurrency`` closed-loop threads (the client process)."""
    latencies = [0.0] * len(payloads)
    statuses = [0] * len(payloads)
    missing = [0] * len(payloads)
    counter = itertools.count()  # next() on it is atomic under the GIL
    start = threading.Barrier(concurrency + 1)

    def work() -> None:
        start.wait()
        while (index := next(counter)) < len(payloads):
            began = time.perf_counter()
            try:
                status, response = _exchange(port, payloads[index])
            except OSError:
                status, response = 0, b""
            latencies[index] = time.perf_counter() - began
            statuses[index] = status
            if marker is not None and marker not in response:
                missing[index] = 1

    threads = [threading.Thread(target=work, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    cpu = time.process_time()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    return ClientReport(seconds, time.process_time() - cpu, latencies, statuses, sum(missing))


class LoadGenerator:
    """A process of its own that runs :func:`drive`; spawned so it inherits no engine or lock."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn")
        )
        # Start the process (and its imports) now, not inside the first measurement.
        self._pool.submit(time.sleep, 0).result()

    def run(
        self, port: int, payloads: list[bytes], concurrency: int, marker: bytes | None = None
    ) -> ClientReport:
        return self._pool.submit(drive, port, payloads, concurrency, marker).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def load_generator() -> Iterator[LoadGenerator]:
    generator = LoadGenerator()
    try:
        yield generator
    finally:
        generator.close()


# --- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """A browser's session: its cookie and what the signup form it was shown carries."""

    cookie: str
    csrf_token: str
    started: str
    consent_text_id: str


def hidden(page: str, name: str) -> str:
    """The value of a hidden form field (as tests/builders.py reads it)."""
    match = re.search(rf'name="{name}"[^>]*value="([^"]*)"', page) or re.search(
        rf'value="([^"]*)"[^>]*name="{name}"', page
    )
    if not match:
        raise SystemExit(f"no field {name!r} in the signup page")
    return html.unescape(match.group(1))


def open_session(server: Server) -> Session:
    """Show the signup form once, as a browser would, and keep its cookie and fields."""
    status, page, set_cookie = server.get("/", {"Accept-Language": LANGUAGE})
    if status != 200 or not set_cookie:
        raise SystemExit(f"the signup page answered {status} (cookie: {bool(set_cookie)})")
    return Session(
        cookie=set_cookie.split(";", 1)[0],
        csrf_token=hidden(page, "csrf_token"),
        started=hidden(page, "started"),
        consent_text_id=hidden(page, "consent_text_id"),
    )


def http_request(
    server: Server,
    method: str,
    path: str,
    *,
    form: list[tuple[str, str]] | None = None,
    cookie: str | None = None,
) -> bytes:
    """The bytes of one HTTP/1.1 request, built before the clock starts."""
    body = urlencode(form).encode() if form is not None else b""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {server.host}",
        "User-Agent: bench-http",
        f"Accept-Language: {LANGUAGE}",
        "Connection: close",
    ]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    if method == "POST":
        lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def confirm_posts(server: Server, session: Session, pairs: list[tuple[str, str]]) -> list[bytes]:
    return [
        http_request(
            server,
            "POST",
            f"/confirm/{token}",
            form=[("csrf_token", session.csrf_token)],
            cookie=session.cookie,
        )
        for _, token in pairs
    ]


def signup_posts(server: Server, session: Session, addresses: list[str]) -> list[bytes]:
    return [
        http_request(
            server,
            "POST",
            "/",
            form=[
                ("csrf_token", session.csrf_token),
                ("consent_text_id", session.consent_text_id),
                ("started", session.started),
                ("source", ""),
                ("email", email),
                ("first_name", ""),
                ("language", LANGUAGE),
                ("topics", TOPIC),
                ("consent", "y"),
                ("website", ""),
            ],
            cookie=session.cookie,
        )
        for email in addresses
    ]


def manage_gets(server: Server, subscribers: list[Subscriber]) -> list[bytes]:
    """The preference page, opened from an email's link: no cookie yet."""
    return [http_request(server, "GET", f"/manage/{s.manage_token}") for s in subscribers]


def manage_posts(server: Server, session: Session, subscribers: list[Subscriber]) -> list[bytes]:
    """The preference page saved with the version it was shown with; answered with a 303."""
    return [
        http_request(
            server,
            "POST",
            f"/manage/{s.manage_token}",
            form=[
                ("csrf_token", session.csrf_token),
                ("version", str(s.prefs_version)),
                ("consent_text_id", str(s.consent_text_id)),
                ("language", LANGUAGE),
                ("first_name", BENCH_FIRST_NAME),
                ("paused_until", ""),
                (f"topic-{TOPIC}", "y"),
            ],
            cookie=session.cookie,
        )
        for s in subscribers
    ]


def one_click_posts(server: Server, subscribers: list[Subscriber]) -> list[bytes]:
    """RFC 8058 one-click unsubscribes, as a mailbox provider sends them: no cookie, no CSRF."""
    return [
        http_request(
            server,
            "POST",
            f"/u/{s.unsubscribe_token}",
            form=[("List-Unsubscribe", "One-Click")],
        )
        for s in subscribers
    ]


# --- scenarios ------------------------------------------------------------------------------


@dataclass
class ScenarioResult:
    name: str
    requests: int
    seconds: float
    client_cpu_seconds: float
    server_cpu_seconds: float  # the gunicorn workers
    database_cpu_seconds: float  # the PostgreSQL backends (SQLite runs inside the workers)
    machine_busy: float  # fraction of all CPUs busy during the run
    latencies_ms: list[float] = field(repr=False)
    errors: int
    ratio: float = 0.0
    cpu_ratio: float = 0.0
    #: The bare requests sent in the slices alternating with this scenario's (None for bare).
    bare: ScenarioResult | None = field(default=None, repr=False)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else float("inf")

    @property
    def cpu_ms_per_request(self) -> float:
        """Server plus database CPU per request: what a request costs, whoever else is busy.

        Requests per second on a shared machine depend on the neighbours; this does not.
        """
        return (self.server_cpu_seconds + self.database_cpu_seconds) * 1000 / self.requests

    def percentile(self, fraction: float) -> float:
        """Nearest-rank percentile of the latencies, in ms."""
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        rank = min(max(1, math.ceil(fraction * len(ordered))), len(ordered))
        return ordered[rank - 1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.name,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "per_second": round(self.per_second, 1),
            "p50_ms": round(self.percentile(0.50), 2),
            "p99_ms": round(self.percentile(0.99), 2),
            "max_ms": round(max(self.latencies_ms, default=0.0), 2),
            "errors": self.errors,
            "ratio_to_bare": round(self.ratio, 3),
            "cpu_ms_per_request": round(self.cpu_ms_per_request, 2),
            "cpu_ratio_to_bare": round(self.cpu_ratio, 3),
            "client_cpu_seconds": round(self.client_cpu_seconds, 2),
            "server_cpu_seconds": round(self.server_cpu_seconds, 2),
            "database_cpu_seconds": round(self.database_cpu_seconds, 2),
            "machine_busy": round(self.machine_busy, 3),
            "bare_per_second": round(self.bare.per_second, 1) if self.bare else None,
            "bare_cpu_ms_per_request": round(self.bare.cpu_ms_per_request, 2)
            if self.bare
            else None,
        }


def run_scenario(
    name: str,
    generator: LoadGenerator,
    server: Server,
    payloads: list[bytes],
    concurrency: int,
    marker: bytes | None = None,
    accepted: tuple[int, ...] = (),
) -> ScenarioResult:
    """Send ``payloads`` through the load generator and account for the CPUs meanwhile."""
    workers = server.worker_pids()
    # Backends are per pooled connection, opened by the warm-up and kept for the whole run.
    backends = backends_of(server.database_name)
    server_cpu, database_cpu = cpu_seconds(workers), cpu_seconds(backends)
    busy, total = machine_ticks()
    report = generator.run(server.port, payloads, concurrency, marker)
    busy_after, total_after = machine_ticks()
    if sorted(backends_of(server.database_name)) != sorted(backends):
        print(f"warning: {name}: database connections changed during the run", file=sys.stderr)
    if sorted(server.worker_pids()) != sorted(workers):
        # A worker that died (or timed out) and was replaced would make the figures lie.
        raise SystemExit(f"{name}: a gunicorn worker was replaced during the run:\n{server.log()}")
    errors = sum(1 for s in report.statuses if not succeeded(s, accepted)) + report.missing_marker
    return ScenarioResult(
        name=name,
        requests=len(payloads),
        seconds=report.seconds,
        client_cpu_seconds=report.cpu_seconds,
        server_cpu_seconds=cpu_seconds(workers) - server_cpu,
        database_cpu_seconds=cpu_seconds(backends) - database_cpu,
        machine_busy=(busy_after - busy) / (total_after - total) if total_after > total else 0.0,
        latencies_ms=[latency * 1000 for latency in report.latencies],
        errors=errors,
    )


def pooled(name: str, parts: list[ScenarioResult]) -> ScenarioResult:
    """One result for the slices of a scenario: their sums, and every latency."""
    seconds = sum(p.seconds for p in parts)
    return ScenarioResult(
        name=name,
        requests=sum(p.requests for p in parts),
        seconds=seconds,
        client_cpu_seconds=sum(p.client_cpu_seconds for p in parts),
        server_cpu_seconds=sum(p.server_cpu_seconds for p in parts),
        database_cpu_seconds=sum(p.database_cpu_seconds for p in parts),
        machine_busy=sum(p.machine_busy * p.seconds for p in parts) / seconds if seconds else 0.0,
        latencies_ms=[latency for p in parts for latency in p.latencies_ms],
        errors=sum(p.errors for p in parts),
    )


class Pairing:
    """Runs each scenario in slices that alternate with slices of bare requests.

    The machine is shared: neighbours come and go within a minute, and one bare run before
    every scenario measured the baseline under other conditions than the scenarios that came
    minutes later. Alternating slices (bare first in one round, the scenario first in the
    next) puts both sides of every ratio under the same conditions; each side still runs
    alone with the same closed loop, and both servers stay up, the idle one asleep.
    """

    def __init__(
        self,
        generator: LoadGenerator,
        server: Server,
        payloads: list[bytes],
        args: argparse.Namespace,
    ) -> None:
        self.generator, self.server, self.payloads = generator, server, payloads
        self.concurrency, self.rounds = args.concurrency, args.rounds
        self.results: list[ScenarioResult] = []

    def run(
        self,
        name: str,
        server: Server,
        payloads: list[bytes],
        marker: bytes | None = None,
        accepted: tuple[int, ...] = (),
    ) -> ScenarioResult:
        size = math.ceil(len(payloads) / self.rounds)
        mine: list[ScenarioResult] = []
        bare: list[ScenarioResult] = []
        for index, start in enumerate(range(0, len(payloads), size)):
            sides = [
                (bare, "bare", self.server, self.payloads[start : start + size], None, ()),
                (mine, name, server, payloads[start : start + size], marker, accepted),
            ]
            for into, label, target, part, mark, ok in sides[:: 1 if index % 2 else -1]:
                into.append(
                    run_scenario(label, self.generator, target, part, self.concurrency, mark, ok)
                )
        result = pooled(name, mine)
        result.bare = pooled("bare", bare)
        self.results.extend(bare)
        return result


def succeeded(status: int, accepted: tuple[int, ...] = ()) -> bool:
    """2xx, or one of the scenario's ``accepted`` statuses (303 for a saved preference page)."""
    return 200 <= status < 300 or status in accepted


def warm_up(
    generator: LoadGenerator,
    server: Server,
    payloads: list[bytes],
    name: str,
    accepted: tuple[int, ...] = (),
) -> None:
    """Send untimed requests so every worker has compiled its templates and opened its pool."""
    report = generator.run(server.port, payloads, server.workers * 2)
    failed = [s for s in report.statuses if not succeeded(s, accepted)]
    if failed:
        raise SystemExit(f"warm-up of {name} failed with statuses {sorted(set(failed))}")


def verify(app: Flask, dataset: Dataset, signups: list[str], touched: int) -> None:
    """The database must show what the 2xx answers claimed."""
    with app.app_context():
        confirmed_ids = [public_id for public_id, _ in dataset.confirmed]
        confirmed = db.session.scalar(
            select(func.count())
            .select_from(SignupRequest)
            .where(
                SignupRequest.public_id.in_(confirmed_ids),
                SignupRequest.status == RequestStatus.CONFIRMED,
            )
        )
        shown_ids = [public_id for public_id, _ in dataset.shown]
        shown = db.session.scalar(
            select(func.count())
            .select_from(SignupRequest)
            .where(
                SignupRequest.public_id.in_(shown_ids),
                SignupRequest.status == RequestStatus.PENDING,
                SignupRequest.emailed_at.is_not(None),
            )
        )
        created = db.session.scalar(
            select(func.count())
            .select_from(SignupRequest)
            .join(SignupRequest.contact)
            .where(Contact.email.in_(signups))
        )
        saver_ids = [s.public_id for s in dataset.savers]
        saved = db.session.scalar(
            select(func.count())
            .select_from(Contact)
            .where(Contact.public_id.in_(saver_ids), Contact.first_name == BENCH_FIRST_NAME)
        )
        leaver_ids = [s.public_id for s in dataset.leavers]
        subscribed = dict(
            db.session.execute(
                select(Subscription.status, func.count())
                .join(Subscription.contact)
                .where(Contact.public_id.in_(leaver_ids))
                .group_by(Subscription.status)
            ).all()
        )
        db.session.remove()
        db.engine.dispose()
    problems = []
    if saved != len(saver_ids):
        problems.append(f"{saved} of {len(saver_ids)} preference-page POSTs were saved")
    left = subscribed.get(SubscriptionStatus.UNSUBSCRIBED, 0)
    if left != len(leaver_ids) or sum(subscribed.values()) != left:
        problems.append(
            f"{left} of {len(leaver_ids)} one-click POSTs unsubscribed their subscriber "
            f"(subscriptions by status: {subscribed})"
        )
    if confirmed != len(confirmed_ids):
        problems.append(f"{confirmed} of {len(confirmed_ids)} POSTed confirmations are confirmed")
    if shown != touched:
        problems.append(f"{shown} of {touched} requests were touched by the bare endpoint")
    if created != len(signups):
        problems.append(f"{created} of {len(signups)} signup POSTs created a request")
    if problems:
        raise SystemExit("verification failed: " + "; ".join(problems))


# --- the run --------------------------------------------------------------------------------


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    warmup = WARMUP_PER_WORKER * args.workers
    load = busy_warning()
    with (
        database(args.database_url) as (backend, url),
        tempfile.TemporaryDirectory(prefix="bench-http-logs-") as logs,
    ):
        # The port is only known once a server starts; the setup app needs no SERVER_NAME
        # that matches it (tokens carry no host), so any value does.
        app = create_app(settings(url, 1))
        print(
            f"preparing {2 * (args.requests + warmup)} pending requests and "
            f"{len(SUBSCRIBER_GROUPS) * (args.requests + warmup)} confirmed subscribers "
            f"on {backend}…",
            file=sys.stderr,
        )
        dataset = prepare(app, args.requests, warmup, run)
        signups = [address("signup", index, run) for index in range(args.requests)]
        signup_warmup = [address("signup-warmup", index, run) for index in range(warmup)]
        results: list[ScenarioResult] = []
        with (
            load_generator() as generator,
            running_server(
                "bench_http:bare_app()", url, args.workers, Path(logs) / "bare.log"
            ) as bare_server,
            running_server("wsgi:app", url, args.workers, Path(logs) / "app.log") as server,
        ):

            def bare_posts(pairs: list[tuple[str, str]]) -> list[bytes]:
                return [http_request(bare_server, "POST", f"/bare/{pid}") for pid, _ in pairs]

            def confirm_gets(pairs: list[tuple[str, str]]) -> list[bytes]:
                return [http_request(server, "GET", f"/confirm/{t}") for _, t in pairs]

            session = open_session(server)
            warm_up(generator, bare_server, bare_posts(dataset.shown_warmup), "bare")
            warm_up(generator, server, confirm_gets(dataset.shown_warmup), "confirm GET")
            warm_up(
                generator,
                server,
                confirm_posts(server, session, dataset.confirmed_warmup),
                "confirm POST",
            )
            warm_up(generator, server, signup_posts(server, session, signup_warmup), "signup")
            warm_up(generator, server, manage_gets(server, dataset.viewers_warmup), "manage GET")
            warm_up(
                generator,
                server,
                manage_posts(server, session, dataset.savers_warmup),
                "manage POST",
                SEE_OTHER,
            )
            warm_up(generator, server, one_click_posts(server, dataset.leavers_warmup), "one-click")
            # Every scenario is paired with as many bare requests, in alternating slices; the
            # bare endpoint only sets emailed_at, so the same requests serve every pairing.
            bare = Pairing(generator, bare_server, bare_posts(dataset.shown), args)
            results.append(
                bare.run("confirm GET", server, confirm_gets(dataset.shown), CONFIRM_PAGE_MARKER)
            )
            results.append(
                bare.run("confirm POST", server, confirm_posts(server, session, dataset.confirmed))
            )
            results.append(bare.run("signup POST", server, signup_posts(server, session, signups)))
            results.append(
                bare.run(
                    "manage GET", server, manage_gets(server, dataset.viewers), MANAGE_PAGE_MARKER
                )
            )
            results.append(
                bare.run(
                    "manage POST",
                    server,
                    manage_posts(server, session, dataset.savers),
                    accepted=SEE_OTHER,
                )
            )
            results.append(
                bare.run("one-click POST", server, one_click_posts(server, dataset.leavers))
            )
            results.insert(0, pooled("bare", bare.results))
        failed = [r for r in results if r.errors]
        if failed:
            raise SystemExit(
                "non-2xx answers or wrong pages: "
                + ", ".join(f"{r.name}: {r.errors} of {r.requests}" for r in failed)
            )
        verify(app, dataset, signups, args.requests)

    load_after = os.getloadavg()[0]
    for result in results:
        paired = result.bare or result
        result.ratio = result.per_second / paired.per_second
        result.cpu_ratio = paired.cpu_ms_per_request / result.cpu_ms_per_request
    confirm_post = next(r for r in results if r.name == "confirm POST")
    service = [r for r in results if r.name != "bare"]
    ratio_passed = confirm_post.ratio >= RATIO_GOAL
    pages = [r for r in results if r.name in PAGE_SCENARIOS]
    page_ratio_passed = all(r.ratio >= RATIO_GOAL for r in pages)
    p99_passed = all(r.percentile(0.99) < P99_GOAL_MS for r in service)
    return {
        "benchmark": "http",
        "backend": backend,
        "requests": args.requests,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "worker_class": "sync",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": round(load, 2),
        "load_average_after": round(load_after, 2),
        "scenarios": [r.as_dict() for r in results],
        "ratio_goal": RATIO_GOAL,
        "p99_goal_ms": P99_GOAL_MS,
        "ratio_passed": ratio_passed,
        "page_ratio_passed": page_ratio_passed,
        "p99_passed": p99_passed,
        "passed": ratio_passed and page_ratio_passed and p99_passed,
    }


def print_table(results: dict[str, Any]) -> None:
    print(
        f"HTTP, {results['backend']}, gunicorn {results['workers']} {results['worker_class']} "
        f"workers, {results['requests']} requests per scenario in {results['rounds']} slices "
        f"alternating with as many bare ones, {results['concurrency']} connections, Python {results['python']}, load average {results['load_average']:.2f} "
        f"before and {results['load_average_after']:.2f} after, on {results['cpus']} CPUs"
    )
    # bare req/s: the bare slices alternating with this scenario's, which "vs bare" divides
    # by (the bare row pools every bare slice). cpu ms/req: gunicorn workers plus PostgreSQL
    # backends, per request; cpu vs bare: the same ratio computed from it. client %: the
    # load generator's CPU as a share of one CPU. busy: share of all the machine's CPUs in
    # use during the run, neighbours included.
    print(
        f"{'scenario':<16}{'requests':>9}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}"
        f"{'bare req/s':>11}{'vs bare':>8}{'cpu ms/req':>11}{'cpu vs bare':>12}"
        f"{'client %':>9}{'busy':>6}"
    )
    for s in results["scenarios"]:
        client = s["client_cpu_seconds"] / s["seconds"] if s["seconds"] else 0.0
        paired = s["bare_per_second"] if s["bare_per_second"] is not None else s["per_second"]
        print(
            f"{s['scenario']:<16}{s['requests']:>9}{s['per_second']:>8.1f}{s['p50_ms']:>8.1f}"
            f"{s['p99_ms']:>8.1f}{s['errors']:>7}{paired:>11.1f}{s['ratio_to_bare']:>8.2f}"
            f"{s['cpu_ms_per_request']:>11.2f}{s['cpu_ratio_to_bare']:>12.2f}{client:>9.0%}"
            f"{s['machine_busy']:>6.0%}"
        )
    confirm_post = next(s for s in results["scenarios"] if s["scenario"] == "confirm POST")
    verdict = "PASS" if results["ratio_passed"] else "BELOW"
    print(
        f"goal: confirm POST >= {results['ratio_goal']:.2f} of bare in req/s: "
        f"{confirm_post['ratio_to_bare']:.2f}: {verdict}"
    )
    pages = [s for s in results["scenarios"] if s["scenario"] in PAGE_SCENARIOS]
    weakest = min(pages, key=lambda s: s["ratio_to_bare"])
    verdict = "PASS" if results["page_ratio_passed"] else "BELOW"
    print(
        f"goal: {', '.join(PAGE_SCENARIOS)} each >= {results['ratio_goal']:.2f} of bare in "
        f"req/s: lowest {weakest['ratio_to_bare']:.2f} ({weakest['scenario']}): {verdict}"
    )
    pages = [s for s in results["scenarios"] if s["scenario"] != "bare"]
    worst = max(pages, key=lambda s: s["p99_ms"])
    verdict = "PASS" if results["p99_passed"] else "BELOW"
    print(
        f"goal: p99 < {results['p99_goal_ms']:.0f} ms on every page: worst "
        f"{worst['p99_ms']:.1f} ms ({worst['scenario']}): {verdict}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "-n",
        "--requests",
        type=int,
        default=2000,
        help="timed requests per scenario (default 2000)",
    )
    parser.add_argument(
        "-c",
        "--concurrency",
        type=int,
        default=2,
        help="client connections in flight at any time (default 2: one per worker)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="gunicorn sync workers per server (default 2)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=10,
        help="slices per scenario, alternating with as many bare requests (default 10)",
    )
    parser.add_argument(
        "--database-url",
        help="PostgreSQL server to run on, e.g. postgresql+psycopg://postgres@127.0.0.1/postgres; "
        "a throwaway database is created there and dropped (default: a temporary SQLite file)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit with status 3 when a goal is missed (ratio {RATIO_GOAL}, p99 {P99_GOAL_MS:.0f} ms)",
    )
    args = parser.parse_args(argv)
    if min(args.requests, args.concurrency, args.workers, args.rounds) < 1:
        parser.error("--requests, --concurrency, --workers and --rounds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return report(benchmark(args), args, print_table)


if __name__ == "__main__":
    sys.exit(main())

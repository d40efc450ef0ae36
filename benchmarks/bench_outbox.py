"""Outbox delivery throughput against plain smtplib, on the same local SMTP sink.

The issue: "deliver N (default 5,000) queued messages in three languages to a local SMTP
server running in a separate process, and in the same run send the same number of pre-built
messages with plain ``smtplib`` over one reused connection to the same server. Print messages
per second for both and the ratio. Goal: the outbox reaches at least 0.8 of plain smtplib."

Why it is built this way:

* The sink is an aiosmtpd server in its own process, so its CPU time is not charged to the
  side being measured and both sides talk to the very same server. It only counts messages,
  so the sink costs the same per message whatever the message says. At the end each side's
  count is checked against what it claims to have sent: a fast run that lost mail is no result.
* Only delivery is timed. Enqueueing (the web request's work) and pre-building the baseline's
  bytes happen before the clock starts; the outbox's rendering, MIME building and per-message
  bookkeeping in the database are what the benchmark is about, so they stay inside the timing.
* The baseline sends bytes rendered once per language through the outbox's own templates and
  MIME code, with per-message To and Message-ID headers, so both sides put messages of the
  same size on the wire and the ratio measures the outbox's overhead, not a size difference.
* SQLite runs by default (nothing to set up); ``--database-url`` points at a PostgreSQL server
  on which a throwaway database is created and dropped, because the per-message commits cost
  very differently on the two.

Run it with ``make bench`` (which compiles the translations first) or directly with
``.venv/bin/python benchmarks/bench_outbox.py [-n 5000] [--database-url URL] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.util
import json
import multiprocessing
import os
import platform
import random
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from common import busy_warning, report, throwaway_database
from flask import Flask
from sqlalchemy import func, select

from preference_center import addresses, config, create_app, i18n
from preference_center.extensions import db
from preference_center.mail import messages, outbox
from preference_center.models import OutboxMessage, OutboxStatus

#: run_all.py runs this script a second time with --database-url when BENCH_DATABASE_URL is set.
ACCEPTS_DATABASE_URL = True

GOAL = 0.8
#: The worker's OUTBOX_CONCURRENCY for the run: the service's default unless told otherwise.
DEFAULT_CONCURRENCY = int(config.DEFAULTS["OUTBOX_CONCURRENCY"])
#: Worker processes for the run (see docs/benchmarks.md for the choice).
DEFAULT_WORKERS = 1
LANGUAGES = ("nl", "fr", "en")
SENDER = "Voorkeuren Bench <news@prefs.example.be>"
ENVELOPE_SENDER = "news@prefs.example.be"
#: Rows are committed in chunks while enqueueing: one huge transaction is not what the
#: service does, and one commit per row would make the untimed setup needlessly slow.
ENQUEUE_CHUNK = 1000
#: Stand-ins replaced per message in the headers of the baseline's pre-built bytes.
PLACEHOLDER_ADDRESS = "placeholder@example.org"
PLACEHOLDER_MESSAGE_ID = "<placeholder.bench@prefs.example.be>"


def recipient(index: int) -> str:
    """The recipient of message ``index``; example.org is reserved, nothing can leave."""
    return f"user{index}@example.org"


# --- the SMTP sink (a separate process) ---------------------------------------------------


class CountingHandler:
    """An aiosmtpd handler that accepts every message and only counts it.

    No parsing: the sink's cost per message must be small and the same for both sides.
    """

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.count += len(envelope.rcpt_tos)
        return "250 OK"


def _sink_main(control: Connection) -> None:
    """Entry point of the sink process: serve SMTP and answer "count"/"stop" on ``control``.

    The control pipe is read on the event loop itself, so a "count" is answered only after
    every DATA reply the server already sent has been counted.
    """
    handler = CountingHandler()
    loop = asyncio.new_event_loop()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))  # the kernel picks a free port: no race with a probe
    listener.listen(64)
    # command_call_limit=None: aiosmtpd would otherwise allow only 20 MAIL commands per
    # connection and the reused connection of both sides would be cut.
    server = loop.run_until_complete(
        loop.create_server(
            lambda: SMTP(handler, hostname="bench-sink.invalid", command_call_limit=None),
            sock=listener,
        )
    )

    def on_command() -> None:
        try:
            command = control.recv()
        except EOFError:  # the benchmark process is gone
            loop.stop()
            return
        # The sink's own CPU time too: how much of a side's wall time the sink itself needed.
        control.send((handler.count, time.process_time()))
        if command == "stop":
            loop.stop()

    loop.add_reader(control.fileno(), on_command)
    control.send(listener.getsockname()[1])
    try:
        loop.run_forever()
    finally:
        server.close()
        # A client that never said QUIT (an aborted run) leaves its session task pending.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()


class Sink:
    """The benchmark's handle on the sink process."""

    def __init__(self) -> None:
        # spawn, not fork: the child must not inherit this process's open database engines
        # and threads; it only needs the small function above.
        context = multiprocessing.get_context("spawn")
        self._control, child_end = context.Pipe()
        self._process = context.Process(
            target=_sink_main, args=(child_end,), name="smtp-sink", daemon=True
        )
        self._process.start()
        child_end.close()
        try:
            if not self._control.poll(60):
                raise TimeoutError("the SMTP sink process did not start within 60 s")
            self.port: int = self._control.recv()
        except (TimeoutError, EOFError) as exc:
            self._process.kill()
            self._process.join()
            raise RuntimeError(
                f"the SMTP sink process failed (exit {self._process.exitcode})"
            ) from exc

    def status(self) -> tuple[int, float]:
        """Messages the sink has accepted so far, and the CPU seconds it has used."""
        self._control.send("count")
        count, cpu = self._control.recv()
        return int(count), float(cpu)

    def stop(self) -> None:
        try:
            self._control.send("stop")
            self._control.recv()
        except (BrokenPipeError, EOFError):
            pass
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


@contextmanager
def running_sink() -> Iterator[Sink]:
    sink = Sink()
    try:
        yield sink
    finally:
        sink.stop()


# --- databases ------------------------------------------------------------------------------


def database(admin_url: str | None) -> AbstractContextManager[tuple[str, str]]:
    return throwaway_database(admin_url, "bench-outbox-")


def build_app(database_url: str, smtp_port: int, async_commit: bool = False) -> Flask:
    """The service configured like the test suite's ``_base_config``, pointed at the sink.

    ``async_commit`` is OUTBOX_ASYNC_COMMIT (PostgreSQL only; see the README for the trade).
    """
    return create_app(
        {
            "OUTBOX_ASYNC_COMMIT": async_commit,
            "TESTING": True,
            "SECRET_KEY": "bench-secret-key-not-for-production",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "SERVER_NAME": "prefs.example.be",
            "PREFERRED_URL_SCHEME": "https",
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": smtp_port,
            "MAIL_TIMEOUT": 10.0,
            "MAIL_DEFAULT_SENDER": SENDER,
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )


# --- translations ---------------------------------------------------------------------------


def ensure_translations() -> None:
    """Compile the catalogues when a .mo is missing or older than its .po.

    Without them nl and fr emails silently fall back to English and the benchmark would
    measure one language instead of three. ``make bench`` compiles them already; this covers
    running the script on its own.
    """
    stale = [
        po
        for po in config.TRANSLATIONS_DIR.glob("*/LC_MESSAGES/messages.po")
        if not po.with_suffix(".mo").exists()
        or po.with_suffix(".mo").stat().st_mtime < po.stat().st_mtime
    ]
    if not stale:
        return
    print("compiling translations (make bench does this for you)", file=sys.stderr)
    env = dict(os.environ)
    if importlib.util.find_spec("preference_center.translations") is not None:
        # What `make translations` runs: no application, so no settings needed.
        command = [sys.executable, "-m", "preference_center.translations", "compile"]
    else:
        # Older checkouts only have the Flask command, whose app factory wants a secret.
        command = [str(Path(sys.executable).with_name("flask")), "--app", "preference_center"]
        command += ["translations", "compile"]
        env.setdefault("FLASK_SECRET_KEY", "bench-compile-only-not-a-secret")
    subprocess.run(command, check=True, env=env, cwd=config.PROJECT_ROOT, stdout=subprocess.DEVNULL)


def check_languages(app: Flask) -> None:
    """Refuse to run when a language would be sent in English instead (catalogue E10)."""
    with app.app_context():
        fallen_back = [lang for lang in LANGUAGES if i18n.email_language(lang) != lang]
    if fallen_back:
        raise SystemExit(
            f"the catalogues for {', '.join(fallen_back)} are incomplete or not compiled: "
            "run `make translations` and translate the missing entries"
        )


# --- the two sides --------------------------------------------------------------------------


@dataclass
class SideResult:
    side: str
    messages: int
    seconds: float
    #: CPU time of this process alone: the rest of ``seconds`` went waiting for the sink or
    #: the database, which tells a slow computation from a slow conversation.
    cpu_seconds: float
    #: The sink process's CPU time during the side: a side cannot go faster than the sink.
    sink_cpu_seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else float("inf")


@dataclass
class Timing:
    seconds: float = 0.0
    cpu_seconds: float = 0.0


@contextmanager
def timed() -> Iterator[Timing]:
    """Wall-clock and CPU time of the block."""
    timing = Timing()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield timing
    finally:
        timing.seconds = time.perf_counter() - wall
        timing.cpu_seconds = time.process_time() - cpu


def prebuild_baseline(app: Flask, count: int) -> list[tuple[str, bytes]]:
    """``count`` (recipient, message bytes) pairs, rendered once per language by the outbox.

    Only the To and Message-ID headers differ between messages, as between the outbox's.
    """
    by_language: dict[str, tuple[bytes, bytes]] = {}
    with app.app_context():
        for language in LANGUAGES:
            row = OutboxMessage(
                message_id=PLACEHOLDER_MESSAGE_ID,
                template="test",
                to_address=PLACEHOLDER_ADDRESS,
                language=language,
                context={"address": PLACEHOLDER_ADDRESS},
            )
            raw = messages.build(row, messages.render(row)).as_bytes()
            head, separator, body = raw.partition(b"\r\n\r\n")
            by_language[language] = (head, separator + body)
        # Minted like the outbox's own, so the headers have the same length too.
        message_ids = [messages.new_message_id() for _ in range(count)]
    prebuilt = []
    for index in range(count):
        address = recipient(index)
        head, body = by_language[LANGUAGES[index % len(LANGUAGES)]]
        head = head.replace(PLACEHOLDER_ADDRESS.encode(), address.encode()).replace(
            PLACEHOLDER_MESSAGE_ID.encode(), message_ids[index].encode()
        )
        prebuilt.append((address, head + body))
    return prebuilt


def run_baseline(prebuilt: list[tuple[str, bytes]], port: int, sink: Sink) -> SideResult:
    """Send every pre-built message over one reused smtplib connection (timed)."""
    before, sink_cpu = sink.status()
    with timed() as timing, smtplib.SMTP("127.0.0.1", port, timeout=10) as connection:
        for address, message in prebuilt:
            connection.sendmail(ENVELOPE_SENDER, [address], message)
    after, sink_cpu_after = sink.status()
    received = after - before
    if received != len(prebuilt):
        raise SystemExit(f"smtplib: the sink received {received} of {len(prebuilt)} messages")
    return SideResult(
        "smtplib", len(prebuilt), timing.seconds, timing.cpu_seconds, sink_cpu_after - sink_cpu
    )


def enqueue_messages(app: Flask, count: int) -> None:
    """Queue ``count`` test messages cycling through nl, fr and en (not timed)."""
    with app.app_context():
        for index in range(count):
            address = addresses.parse(recipient(index))
            outbox.enqueue(
                "test",
                address,
                LANGUAGES[index % len(LANGUAGES)],
                context={"address": address.display},
            )
            if (index + 1) % ENQUEUE_CHUNK == 0:
                db.session.commit()
        db.session.commit()


def run_outbox(
    app: Flask,
    count: int,
    batch_size: int,
    concurrency: int,
    workers: int,
    sink: Sink,
    profile: Path | None,
) -> SideResult:
    """Drain the outbox (timed), then check the worker reports, the sink and the rows agree.

    ``concurrency`` is each worker's OUTBOX_CONCURRENCY: that many SMTP connections, each
    sending from its own thread. With ``workers`` above 1, that many worker processes drain the
    outbox together, as ``flask outbox work`` started that many times would (see the README).
    """
    before, sink_cpu = sink.status()
    if workers == 1:
        with app.app_context():
            worker = outbox.Worker(batch_size=batch_size, concurrency=concurrency)
            profiler = cProfile.Profile() if profile else None
            with timed() as timing:
                if profiler:
                    profiler.enable()
                report = worker.run(once=True)
                if profiler:
                    profiler.disable()
        if profiler and profile:
            profiler.dump_stats(profile)
        reported, errors = report.sent, report.errors
    else:
        reported, errors, timing = run_worker_processes(app, workers, batch_size, concurrency)
    after, sink_cpu_after = sink.status()
    received = after - before
    with app.app_context():
        sent_rows = db.session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.status == OutboxStatus.SENT)
        )
        db.session.rollback()
    if not reported == received == sent_rows == count:
        raise SystemExit(
            f"outbox: {count} queued, workers reported {reported} sent "
            f"(errors: {errors[:3]}), sink received {received}, rows sent {sent_rows}"
        )
    return SideResult(
        "outbox", count, timing.seconds, timing.cpu_seconds, sink_cpu_after - sink_cpu
    )


def run_worker_processes(
    app: Flask, workers: int, batch_size: int, concurrency: int
) -> tuple[int, list[str], Timing]:
    """Fork ``workers`` processes that each run a worker until nothing is due (timed).

    Forked after the setup, so the clock covers only the delivery; each child drops the
    database connections it inherited and reports how many messages it sent through a pipe.
    ``cpu_seconds`` is the children's CPU time.
    """
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    children: list[tuple[int, int]] = []
    timing = Timing()
    cpu_before = os.times()
    wall = time.perf_counter()
    for _ in range(workers):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker process
            os.close(read_end)
            _worker_process(app, batch_size, concurrency, write_end)
        os.close(write_end)
        children.append((pid, read_end))
    sent, errors = 0, []
    for pid, read_end in children:
        with os.fdopen(read_end) as pipe:
            outcome = json.loads(pipe.read() or '{"sent": 0, "errors": ["no report"]}')
        _, status = os.waitpid(pid, 0)
        if status != 0:
            errors.append(f"worker process {pid} exited with status {status}")
        sent += outcome["sent"]
        errors += outcome["errors"]
    timing.seconds = time.perf_counter() - wall
    cpu_after = os.times()
    timing.cpu_seconds = (cpu_after.children_user - cpu_before.children_user) + (
        cpu_after.children_system - cpu_before.children_system
    )
    return sent, errors, timing


def _worker_process(app: Flask, batch_size: int, concurrency: int, report_fd: int) -> None:
    """Body of a forked worker process: deliver, write the outcome to ``report_fd``, exit."""
    status = 1
    try:
        random.seed()  # boundaries and worker names must not repeat the parent's sequence
        with app.app_context():
            db.engine.dispose(close=False)  # the parent's pooled connections are not ours
            report = outbox.Worker(batch_size=batch_size, concurrency=concurrency).run(once=True)
        outcome = {"sent": report.sent, "errors": report.errors[:3]}
        status = 0
    except BaseException as exc:  # reported to the parent, which fails the run
        outcome = {"sent": 0, "errors": [repr(exc)]}
    finally:
        with os.fdopen(report_fd, "w") as pipe:
            pipe.write(json.dumps(outcome))
        os._exit(status)


# --- the run --------------------------------------------------------------------------------


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    ensure_translations()
    load = busy_warning()
    with running_sink() as sink, database(args.database_url) as (backend, url):
        app = build_app(url, sink.port, args.async_commit)
        try:
            check_languages(app)
            with app.app_context():
                db.create_all()
            enqueue_messages(app, args.messages)
            # Pre-building renders the templates once, so neither side pays for compiling
            # them: a worker that runs for days has long done that.
            prebuilt = prebuild_baseline(app, args.messages)
            baseline = run_baseline(prebuilt, sink.port, sink)
            result = run_outbox(
                app,
                args.messages,
                args.batch_size,
                args.concurrency,
                args.workers,
                sink,
                args.profile,
            )
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
    ratio = result.per_second / baseline.per_second
    return {
        "benchmark": "outbox",
        "backend": backend,
        "messages": args.messages,
        "batch_size": args.batch_size,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "async_commit": args.async_commit,
        "languages": list(LANGUAGES),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": round(load, 2),
        "sides": [
            {
                **asdict(side),
                "seconds": round(side.seconds, 3),
                "cpu_seconds": round(side.cpu_seconds, 3),
                "sink_cpu_seconds": round(side.sink_cpu_seconds, 3),
                "per_second": round(side.per_second, 1),
            }
            for side in (baseline, result)
        ],
        "ratio": round(ratio, 3),
        "goal": GOAL,
        "passed": ratio >= GOAL,
    }


def print_table(results: dict[str, Any]) -> None:
    print(
        f"Outbox delivery, {results['messages']} messages in "
        f"{'/'.join(results['languages'])}, {results['backend']}, "
        f"batch size {results['batch_size']}, {results['workers']} worker process(es) "
        f"with concurrency {results['concurrency']}, "
        f"{'asynchronous' if results['async_commit'] else 'synchronous'} sent marks, "
        f"Python {results['python']}, "
        f"load average {results['load_average']:.2f} on {results['cpus']} CPUs"
    )
    # cpu s: this process's CPU time; the rest of the seconds went waiting on the sink or db.
    # sink cpu s: the SMTP sink's own CPU time meanwhile, the floor under either side's time.
    print(
        f"{'side':<10}{'messages':>10}{'seconds':>10}{'msgs/s':>10}{'cpu s':>10}{'sink cpu s':>12}"
    )
    for side in results["sides"]:
        print(
            f"{side['side']:<10}{side['messages']:>10}{side['seconds']:>10.2f}"
            f"{side['per_second']:>10.1f}{side['cpu_seconds']:>10.2f}"
            f"{side['sink_cpu_seconds']:>12.2f}"
        )
    verdict = "PASS" if results["passed"] else "BELOW"
    print(f"ratio outbox/smtplib: {results['ratio']:.2f} (goal {results['goal']:.2f}): {verdict}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "-n", "--messages", type=int, default=5000, help="messages per side (default 5000)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=200,
        help="rows the worker claims at a time (default 200)",
    )
    parser.add_argument(
        "--database-url",
        help="PostgreSQL server to run on, e.g. postgresql+psycopg://postgres@127.0.0.1/postgres; "
        "a throwaway database is created there and dropped (default: a temporary SQLite file)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="the worker's OUTBOX_CONCURRENCY: SMTP connections sending at once, one thread "
        f"each (default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="worker processes draining the outbox together, like `flask outbox work` started "
        f"that many times (default {DEFAULT_WORKERS})",
    )
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="set OUTBOX_ASYNC_COMMIT (PostgreSQL: sent marks without waiting for the WAL flush)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="write a cProfile of the timed outbox run to FILE (slows the outbox side)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit with status 3 when the ratio is below the goal ({GOAL})",
    )
    args = parser.parse_args(argv)
    if min(args.messages, args.batch_size, args.concurrency, args.workers) < 1:
        parser.error("--messages, --batch-size, --concurrency and --workers must be positive")
    if args.profile and args.workers > 1:
        parser.error("--profile needs a single worker process (--workers 1)")
    return args


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SystemExit unwinds the with-blocks: the sink stops and a throwaway database is dropped.
    sys.exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return report(benchmark(args), args, print_table)


if __name__ == "__main__":
    sys.exit(main())

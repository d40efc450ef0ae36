"""Snapshot export and change feed throughput through HTTP, against a server-side-cursor baseline.

The issue: "1,000,000 confirmed subscribers on PostgreSQL (and 200,000 on SQLite); stream the
snapshot as NDJSON and CSV through the HTTP endpoint, and read the whole change feed in pages.
In the same run, time a baseline that streams the same rows with a server-side cursor straight
to the same format. Print rows per second, peak memory of the web process, and the ratio.
Goals: at least 0.6 of the baseline, at least 100,000 rows/s for the snapshot, web process
memory flat (under 150 MB) whatever the size."

How it measures:

* The data: N contacts, each with a confirmed subscription to one topic and the feed entry
  that confirmation wrote, bulk-inserted before any clock starts (names with accents, one in a
  hundred starting with "=" so the CSV neutralisation runs). An API token reads it.
* The web side: the service under gunicorn (one sync worker, production settings, as
  ``wsgi:app``), driven by ``http.client`` from this process: one GET per format that reads
  the whole streamed body, counting lines; the feed read page after page (``limit`` = the
  maximum, 5,000) until ``has_more`` is false. The worker's peak resident memory (VmHWM in
  /proc) is read after each part, and its CPU time (utime + stime) around each snapshot:
  CPU microseconds per row, which other work on a shared machine disturbs far less than
  rows per second.
* The baseline: in this process, one connection with a server-side cursor
  (``stream_results``), the same SELECT, each row written to the same format with the same
  fields, the two signed links included (minted the same way: a snapshot row without them
  would not be the same format), into a sink that only counts bytes. No HTTP, no Flask.
* The ratio is web rows/s over baseline rows/s for the same format.

Run: ``make bench`` or ``.venv/bin/python benchmarks/bench_export.py [--rows N]
[--database-url postgresql+psycopg://postgres@127.0.0.1/postgres] [--json] [--check]``.
The defaults follow the issue: 200,000 rows on SQLite, 1,000,000 on PostgreSQL.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import io
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from bench_http import running_server, settings
from common import busy_warning, report, throwaway_database
from sqlalchemy import insert, select

from preference_center import create_app
from preference_center.extensions import db
from preference_center.models import (
    ChangeKind,
    Contact,
    ContactSource,
    SubscriberChange,
    Subscription,
    SubscriptionStatus,
    Topic,
    utcnow,
)
from preference_center.services import api_tokens, feed
from preference_center.services.preferences import neutralise
from preference_center.services.snapshot import CSV_HEADER

GOAL_RATIO = 0.6
GOAL_ROWS_PER_SECOND = 100_000
GOAL_MEMORY_MB = 150
FIRST_NAMES = ["Anaïs", "Jan", "Élodie", "Pieter", "Zoë", "Loïc", "Marie-Claire", "Thibault"]
LAST_NAMES = ["Peeters", "Dubois", "Janssens", "Lefèvre", "Van den Broeck", "Maes", "Renard"]


def database(admin_url: str | None) -> AbstractContextManager[tuple[str, str]]:
    return throwaway_database(admin_url, "bench-export-")


def populate(app: Any, rows: int) -> tuple[str, str]:
    """N confirmed subscribers of one topic and their feed entries; returns (slug, token)."""
    with app.app_context():
        db.create_all()
        topic = Topic(
            slug="newsletter", name_nl="Nieuwsbrief", name_fr="Lettre", name_en="Newsletter"
        )
        db.session.add(topic)
        db.session.commit()
        now = utcnow()
        chunk = 20_000
        for start in range(0, rows, chunk):
            stop = min(rows, start + chunk)
            contacts = []
            for n in range(start, stop):
                first = FIRST_NAMES[n % len(FIRST_NAMES)]
                contacts.append(
                    {
                        "id": n + 1,
                        "public_id": str(uuid.UUID(int=n + 1)),
                        "email": f"member{n}@example.org",
                        "email_display": f"member{n}@example.org",
                        "first_name": ("=" + first) if n % 100 == 0 else first,
                        "last_name": LAST_NAMES[n % len(LAST_NAMES)],
                        "language": ("nl", "fr", "en")[n % 3],
                        "source": ContactSource.FORM,
                    }
                )
            db.session.execute(insert(Contact), contacts)
            db.session.execute(
                insert(Subscription),
                [
                    {
                        "contact_id": c["id"],
                        "topic_id": topic.id,
                        "status": SubscriptionStatus.SUBSCRIBED,
                        "confirmed_at": now,
                    }
                    for c in contacts
                ],
            )
            db.session.execute(
                insert(SubscriberChange),
                [
                    {
                        "kind": ChangeKind.SUBSCRIBED,
                        "subscriber_id": c["public_id"],
                        "topic_id": topic.id,
                        "occurred_at": now,
                        "email": None,
                    }
                    for c in contacts
                ],
            )
            db.session.commit()
        _, secret = api_tokens.create("bench", None, actor="bench")
        db.session.remove()
        db.engine.dispose()
        return "newsletter", secret


# --- the web side ---------------------------------------------------------------------------


def stream(port: int, host: str, path: str, secret: str) -> tuple[int, int, float, str]:
    """GET ``path`` and read the body to the end: (lines, bytes, seconds, X-Feed-Cursor)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    start = time.perf_counter()
    connection.request("GET", path, headers={"Host": host, "Authorization": f"Bearer {secret}"})
    response = connection.getresponse()
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {response.read()[:500]!r}")
    lines = size = 0
    while chunk := response.read(256 * 1024):
        lines += chunk.count(b"\n")
        size += len(chunk)
    elapsed = time.perf_counter() - start
    connection.close()
    return lines, size, elapsed, response.getheader("X-Feed-Cursor") or ""


def read_feed(port: int, host: str, secret: str) -> tuple[int, int, float]:
    """Read the whole change feed in pages of 5,000: (items, pages, seconds)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"Host": host, "Authorization": f"Bearer {secret}"}
    items = pages = 0
    cursor = ""
    start = time.perf_counter()
    while True:
        query = "/api/v1/changes?limit=5000" + (f"&after={cursor}" if cursor else "")
        connection.request("GET", query, headers=headers)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"GET {query}: {response.status} {body[:500]!r}")
        if response.getheader("Connection", "").lower() == "close":
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        page = json.loads(body)
        items += len(page["items"])
        pages += 1
        cursor = page["cursor"]
        if not page["has_more"]:
            break
    elapsed = time.perf_counter() - start
    connection.close()
    return items, pages, elapsed


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time that ``pids`` used so far, in seconds."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def peak_memory_mb(pids: list[int]) -> float:
    """The largest peak resident set (VmHWM) among ``pids``, in MB."""
    peaks = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks) if peaks else 0.0


# --- the baseline ---------------------------------------------------------------------------


def baseline(app: Any, slug: str, fmt: str) -> tuple[int, int, float]:
    """The same rows, server-side cursor straight to ``fmt``, into a byte-counting sink."""
    with app.test_request_context():
        links = feed.Links()
        topic_id = db.session.scalar(select(Topic.id).where(Topic.slug == slug))
        query = (
            select(*feed.MEMBER_COLUMNS, Subscription.frequency, Subscription.confirmed_at)
            .join(Subscription, Subscription.contact_id == Contact.id)
            .where(
                Subscription.topic_id == topic_id,
                Subscription.status == SubscriptionStatus.SUBSCRIBED,
            )
            .order_by(Contact.id)
        )
        start = time.perf_counter()
        rows = size = 0
        with db.engine.connect() as connection:
            result = connection.execution_options(stream_results=True, yield_per=2000).execute(
                query
            )
            if fmt == "csv":
                out = io.StringIO()
                writer = csv.writer(out)
                writer.writerow(CSV_HEADER)
                for row in result:
                    writer.writerow(
                        (
                            row.email,
                            neutralise(row.first_name),
                            neutralise(row.last_name),
                            row.language,
                            row.public_id,
                            slug,
                            row.frequency,
                            feed.iso(row.confirmed_at),
                            feed.iso(row.paused_until),
                            links.manage(row.public_id, row.manage_version),
                            links.unsubscribe(row.public_id, topic_id),
                        )
                    )
                    rows += 1
                    if out.tell() > 65536:
                        size += len(out.getvalue().encode())
                        out.seek(0)
                        out.truncate()
                size += len(out.getvalue().encode())
            else:
                encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
                for row in result:
                    line = encode(
                        {
                            "email": row.email,
                            "first_name": row.first_name,
                            "last_name": row.last_name,
                            "language": row.language,
                            "subscriber_id": row.public_id,
                            "topic": slug,
                            "frequency": row.frequency,
                            "confirmed_at": feed.iso(row.confirmed_at),
                            "paused_until": feed.iso(row.paused_until),
                            "manage_url": links.manage(row.public_id, row.manage_version),
                            "unsubscribe_url": links.unsubscribe(row.public_id, topic_id),
                        }
                    )
                    size += len(line) + 1
                    rows += 1
        elapsed = time.perf_counter() - start
        db.session.remove()
        return rows, size, elapsed


# --- the run --------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    load = busy_warning()
    results: dict[str, Any] = {"load_average": round(load, 2), "python": platform.python_version()}
    with database(args.database_url) as (backend, url), tempfile.TemporaryDirectory() as folder:
        rows = args.rows or (1_000_000 if backend == "postgresql" else 200_000)
        results.update(backend=backend, rows=rows)
        port_settings = settings(url, 0)
        app = create_app({**port_settings, "SERVER_NAME": "127.0.0.1"})
        print(f"[{backend}] inserting {rows:,} subscribers…", file=sys.stderr)
        slug, secret = populate(app, rows)
        parts: dict[str, Any] = {}
        # A million-row snapshot streams for longer than a sync worker's default 30-second
        # timeout, after which gunicorn kills it mid-response: as in production (README),
        # the API runs with a timeout that fits the longest export.
        os.environ["GUNICORN_CMD_ARGS"] = "--timeout 900"
        with running_server("wsgi:app", url, 1, Path(folder) / "gunicorn.log") as server:
            pids = server.worker_pids()
            # A small request first: the worker's memory before any large response.
            stream(server.port, server.host, "/api/v1/changes?limit=1", secret)
            results["memory_mb_idle"] = round(peak_memory_mb(pids), 1)
            for fmt in ("ndjson", "csv"):
                cpu = cpu_seconds(pids)
                lines, size, seconds, cursor = stream(
                    server.port,
                    server.host,
                    f"/api/v1/subscribers?topic={slug}&format={fmt}",
                    secret,
                )
                count = lines - (1 if fmt == "csv" else 0)
                if count != rows or not cursor:
                    raise SystemExit(f"{fmt}: {count} rows streamed, {rows} expected")
                parts[f"snapshot_{fmt}"] = {
                    "rows": count,
                    "mb": round(size / 1e6, 1),
                    "seconds": round(seconds, 2),
                    "rows_per_second": round(count / seconds),
                    "cpu_us_per_row": round((cpu_seconds(pids) - cpu) / count * 1e6, 2),
                    "memory_mb": round(peak_memory_mb(pids), 1),
                }
            items, pages, seconds = read_feed(server.port, server.host, secret)
            if items != rows:
                raise SystemExit(f"feed: {items} items read, {rows} expected")
            parts["feed"] = {
                "rows": items,
                "pages": pages,
                "seconds": round(seconds, 2),
                "rows_per_second": round(items / seconds),
                "memory_mb": round(peak_memory_mb(pids), 1),
            }
        app.config["SERVER_NAME"] = server.host  # the same links as the server's
        for fmt in ("ndjson", "csv"):
            cpu = time.process_time()
            count, size, seconds = baseline(app, slug, fmt)
            part = parts[f"snapshot_{fmt}"]
            part["baseline_rows_per_second"] = round(count / seconds)
            part["baseline_cpu_us_per_row"] = round((time.process_time() - cpu) / count * 1e6, 2)
            part["ratio"] = round(part["rows_per_second"] / part["baseline_rows_per_second"], 3)
        with app.app_context():
            db.engine.dispose()
    results["parts"] = parts
    results["memory_mb_peak"] = max(p["memory_mb"] for p in parts.values())
    snapshot_parts = [parts["snapshot_ndjson"], parts["snapshot_csv"]]
    results["passed"] = (
        all(p["ratio"] >= GOAL_RATIO for p in snapshot_parts)
        and all(p["rows_per_second"] >= GOAL_ROWS_PER_SECOND for p in snapshot_parts)
        and results["memory_mb_peak"] < GOAL_MEMORY_MB
    )
    return results


def print_table(results: dict[str, Any]) -> None:
    print(
        f"\nbench_export on {results['backend']}: {results['rows']:,} subscribers, "
        f"load average {results['load_average']}, web worker idle {results['memory_mb_idle']} MB"
    )
    print(
        f"{'part':<16}{'rows/s':>10}{'baseline':>10}{'ratio':>8}{'seconds':>9}{'MB out':>8}"
        f"{'worker MB':>11}{'CPU us/row':>12}{'baseline':>10}"
    )
    for name, part in results["parts"].items():
        print(
            f"{name:<16}{part['rows_per_second']:>10,}{part.get('baseline_rows_per_second', 0):>10,}"
            f"{part.get('ratio', float('nan')):>8.3f}{part['seconds']:>9.2f}"
            f"{part.get('mb', 0):>8.1f}{part['memory_mb']:>11.1f}"
            f"{part.get('cpu_us_per_row', float('nan')):>12.2f}"
            f"{part.get('baseline_cpu_us_per_row', float('nan')):>10.2f}"
        )
    print(
        f"goals: snapshot ratio >= {GOAL_RATIO}, snapshot >= {GOAL_ROWS_PER_SECOND:,} rows/s, "
        f"worker < {GOAL_MEMORY_MB} MB: {'PASS' if results['passed'] else 'BELOW'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=None, help="default: 200,000 SQLite, 1,000,000 PostgreSQL"
    )
    parser.add_argument(
        "-n", type=int, default=None, help="ignored (run_all passes it to every script)"
    )
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    return report(run(args), args, print_table)


if __name__ == "__main__":
    sys.exit(main())

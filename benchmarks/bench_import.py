"""Contact import throughput and memory against a bare csv + email-validator + executemany loop.

The issue: "generate a realistic 100,000-row semicolon CSV in Windows-1252 (names with accents,
5% invalid, 5% duplicates, 1% suppressed), import it through the same code path as the upload,
on SQLite and on PostgreSQL; in the same run time a baseline that only parses the same file
with ``csv``, validates each address with email-validator and bulk-inserts the rows with one
``executemany``. Print rows per second, peak memory, and the ratio. Goals: at least 25,000
rows/s on this machine's 2 cores, at least 0.6 of the baseline, peak memory under 200 MB for
1,000,000 rows."

Why it is built this way:

* The file is what a Belgian marketer's Excel writes: Windows-1252, ``;``, CRLF, a Dutch
  header, accented Dutch and French names, companies quoted because they hold ``;`` or ``"``.
  Every address is at example.be/.org/.com/.net, so nothing in it is anyone's address. Rows
  are derived from their index, so the file streams to disk in constant memory and the
  expected report (new, duplicate, invalid, suppressed) is known exactly; the import's
  counts are checked against it, and a fast run with a wrong report is no result.
* The import side is the web upload's path: the preview's :func:`readers.sniff` gives the
  options the marketer confirms (timed apart, it runs in the upload request), then
  :func:`imports.import_contacts` reads the file from disk with them, which is ``_fill``, the
  worker job's code. The suppressed addresses are added through :func:`suppression.add` first.
* The baseline does the least an import must do: ``csv.reader``, ``validate_email`` on every
  row, one ``executemany`` of the valid rows into a fresh plain table and one commit, on the
  same backend and through the app's own engine (same SQLite pragmas, same driver). It checks
  no duplicates, suppressions or existing contacts and writes no report: the ratio is what
  those rules cost.
* Each side runs in a fresh process of its own (this script with ``--side``), one after the
  other, on a fresh database. Memory is that process's peak resident set during the timed call
  minus its resident set just before it: the peak is reset right before the call through
  ``/proc/self/clear_refs`` and read from ``VmHWM`` (Linux), or taken from ``ru_maxrss`` where
  that reset is impossible. So module imports, the app and the other side's data do not count,
  and neither side inflates the other. The absolute peak of the process is printed as well.
* ``--rows 1000000`` checks the memory goal (the import streams the file; it must not hold it).

Run it with ``make bench`` or directly with ``.venv/bin/python benchmarks/bench_import.py
[-n 100000] [--repeat 3] [--database-url URL] [--json] [--profile FILE] [--breakdown]``.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import gc
import json
import os
import platform
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from common import busy_warning, postgres_database, report
from flask import Flask
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select

from preference_center import create_app, readers
from preference_center.extensions import db
from preference_center.models import (
    CollectedBy,
    Contact,
    ImportRow,
    SuppressionReason,
)

#: run_all.py runs this script a second time with --database-url when BENCH_DATABASE_URL is set.
ACCEPTS_DATABASE_URL = True

RATE_GOAL = 25_000  # rows per second, import side
RATIO_GOAL = 0.6  # import rows/s over baseline rows/s
MEMORY_GOAL_MB = 200  # peak memory growth of the import...
MEMORY_GOAL_ROWS = 1_000_000  # ...for a file of this many rows

INVALID_SHARE = 0.05
DUPLICATE_SHARE = 0.05
SUPPRESSED_SHARE = 0.01
SEED = 20261129
#: The child process gets the database URL through the environment, not argv: a PostgreSQL
#: URL may carry a password, and argv is visible to every user in ``ps``.
TARGET_ENV = "BENCH_IMPORT_TARGET_URL"
FILENAME = "beurs-contacten.csv"

# Example domains only (example.com/.net/.org are reserved by RFC 2606; example.be is the one
# the project's tests use): no address in the file belongs to anyone.
DOMAINS = ("example.be", "example.org", "example.com", "example.net")
FIRST_NAMES = (
    "François", "Anaïs", "Jérôme", "Céline", "Zoë", "Geneviève", "Wouter", "Liesbeth",
    "Hélène", "Joëlle", "Noël", "André", "Loïc", "Maël", "Inès", "Renée", "Ségolène", "Raphaël",
    "Gaëtan", "Thérèse", "Benoît", "Aurélie", "Frédéric", "Mélanie", "Jan", "Pieter", "Annelies",
    "Koen", "Sofie", "Bram", "Els", "Joke", "Stijn", "Griet", "Jeroen", "Marieke", "Dirk",
    "Hanne", "Ruben", "Fien", "Kobe", "Lotte", "Siebe", "Ilse", "Thibault", "Amélie", "Cédric",
    "Léa",
)  # fmt: skip
LAST_NAMES = (
    "Dubois", "Lambert", "Peeters", "Janssens", "Maes", "Jacobs", "Mertens", "Willems",
    "Claes", "Goossens", "Wouters", "De Smet", "Van den Bossche", "Vandenberghe", "Lefèvre",
    "Dupont", "Leclercq", "Desmet", "Renard", "Hermans", "Vermeulen", "Van Damme", "Dumoulin",
    "Sépulchre", "Lemaître", "Dewaële", "Gérard", "Ngoma", "Van Acker", "D'Hondt", "Verbrüggen",
    "De Coninck", "Mathieu", "Fontaine", "Noël", "Delvaux", "Massart", "Coppée", "Vandamme",
    "Baert",
)  # fmt: skip
COMPANIES = (
    "Brasserie Dubois & Fils", "Bakkerij Janssens", "Crème & Co", "Horeca Vlaanderen vzw",
    "Boulangerie Lefèvre sprl", "Peeters; Zonen", 'Café "De Kroon"', "Traiteur Sépulchre",
    "Chocolaterie Noël", "Brouwerij Maes & Dochters", "Hôtel du Lac", "Frituur 't Pleintje",
    "Pâtisserie Lemaître", "Vinothèque Gérard", "Groothandel Vermeulen nv", "Zuivel Willems",
    "", "", "",
)  # fmt: skip
LANGUAGE_VALUES = ("NL", "nl", "FR", "fr", "Nederlands", "Français", "EN", "")
NOTES = (
    "", "", "", "Interesse in demo; terugbellen", "À rappeler après l'été", "Stand 4B",
    'Vroeg naar "seizoensmenu"', "Catalogue envoyé", "Kaartje aan de balie gekregen",
)  # fmt: skip
HEADER = ("Voornaam", "Achternaam", "E-mailadres", "Bedrijf", "Taal", "Telefoon", "Opmerking")
EMAIL_COLUMN = HEADER.index("E-mailadres")

NEW, INVALID, DUPLICATE, SUPPRESSED = range(4)
OUTCOMES = {NEW: "new", INVALID: "invalid", DUPLICATE: "duplicate", SUPPRESSED: "suppressed"}


# --- the contact file -------------------------------------------------------------------------


@dataclass
class Expected:
    """What the import report must say about the generated file."""

    rows: int
    counts: dict[str, int]
    #: Canonical addresses to put on the suppression list before the import.
    suppressed: list[str] = field(default_factory=list)


def _ascii(name: str) -> str:
    """A name as people put it in an address: accents, spaces and apostrophes dropped."""
    bare = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(char for char in bare.lower() if char.isalnum())


def person(index: int) -> tuple[str, str, str, str]:
    """(first name, last name, company, canonical address) of row ``index``.

    Derived from the index alone (murmur3's 32-bit finaliser), so a duplicate row can repeat
    an earlier person without the generator remembering every address. The index in the local
    part keeps addresses unique; the patterns vary like real ones do.
    """
    mixed = ((index + SEED) * 0x85EBCA6B) & 0xFFFFFFFF
    mixed ^= mixed >> 13
    mixed = (mixed * 0xC2B2AE35) & 0xFFFFFFFF
    mixed ^= mixed >> 16
    first = FIRST_NAMES[mixed % len(FIRST_NAMES)]
    last = LAST_NAMES[(mixed >> 6) % len(LAST_NAMES)]
    company = COMPANIES[(mixed >> 12) % len(COMPANIES)]
    domain = DOMAINS[(mixed >> 18) % len(DOMAINS)]
    pattern = (mixed >> 20) % 3
    given, family = _ascii(first), _ascii(last)
    if pattern == 0:
        local = f"{given}.{family}{index}"
    elif pattern == 1:
        local = f"{given[0]}{family}.{index}"
    else:
        local = f"{given}_{family}{index}"
    return first, last, company, f"{local}@{domain}"


def invalid_address(address: str, variant: int) -> str:
    """Typical typos of a sheet typed at a stand; each one is refused by email-validator."""
    local, _, domain = address.partition("@")
    if variant == 0:
        return f"{local}.{domain}"  # the @ forgotten
    if variant == 1:
        return f"{local[:3]} {local[3:]}@{domain}"  # a space in the middle
    if variant == 2:
        return f"{local}@@{domain}"
    return f"{local}@{domain.split('.')[0]}"  # no top-level domain


def write_contact_file(path: Path, rows: int) -> Expected:
    """Write ``rows`` data rows (plus a header) to ``path``, streaming, and say what to expect.

    Outcomes are shuffled over the file; the first row is always new, so every duplicate can
    point back at an earlier new row, written again later in another case.
    """
    rng = random.Random(SEED)  # the same file on every run, so runs compare
    n_invalid = round(rows * INVALID_SHARE)
    n_duplicate = round(rows * DUPLICATE_SHARE)
    n_suppressed = round(rows * SUPPRESSED_SHARE)
    n_new = rows - n_invalid - n_duplicate - n_suppressed
    if n_new < 1:
        raise SystemExit("--rows is too small to hold every kind of row")
    kinds = bytearray(
        [NEW] * n_new
        + [INVALID] * n_invalid
        + [DUPLICATE] * n_duplicate
        + [SUPPRESSED] * n_suppressed
    )
    rng.shuffle(kinds)
    first_new = kinds.index(NEW)
    kinds[0], kinds[first_new] = kinds[first_new], kinds[0]
    expected = Expected(rows, {OUTCOMES[k]: n for k, n in ((NEW, n_new), (INVALID, n_invalid),
                        (DUPLICATE, n_duplicate), (SUPPRESSED, n_suppressed)) if n})  # fmt: skip
    # newline="" and lineterminator: CRLF, as Excel on Windows writes it.
    with path.open("w", encoding="cp1252", newline="") as target:
        writer = csv.writer(target, delimiter=";", lineterminator="\r\n")
        writer.writerow(HEADER)
        for index, kind in enumerate(kinds):
            source = index
            if kind == DUPLICATE:
                source = rng.randrange(index)
                while kinds[source] != NEW:
                    source = rng.randrange(index)
            first, last, company, address = person(source)
            if kind == INVALID:
                address = invalid_address(address, index % 4)
            elif kind == DUPLICATE:
                address = address.upper() if index % 2 else address.title()
            elif kind == SUPPRESSED:
                expected.suppressed.append(address)
            phone = f"+32 4{rng.randrange(70, 100)} {rng.randrange(10, 100)} {rng.randrange(10, 100)} {rng.randrange(10, 100)}"
            writer.writerow((first, last, address, company, rng.choice(LANGUAGE_VALUES), phone,
                             rng.choice(NOTES)))  # fmt: skip
    return expected


# --- databases and the app --------------------------------------------------------------------


@contextmanager
def database(admin_url: str | None, folder: Path, label: str) -> Iterator[tuple[str, str]]:
    """Yield (backend name, URL) of an empty database that is removed afterwards."""
    if admin_url is None:
        path = folder / f"{label}.sqlite3"
        try:
            yield "sqlite", f"sqlite:///{path}"
        finally:
            for leftover in folder.glob(f"{label}.sqlite3*"):
                leftover.unlink()
        return
    with postgres_database(admin_url) as target:
        yield target


def build_app(database_url: str) -> Flask:
    """The service configured like the test suite's ``_base_config``.

    The same SECRET_KEY in every process matters: without SUPPRESSION_KEY the suppression
    list's HMAC key is derived from it, and the import must find what the setup added.
    """
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "bench-secret-key-not-for-production",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "SERVER_NAME": "prefs.example.be",
            "PREFERRED_URL_SCHEME": "https",
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": 1,
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )


def prepare_import_database(url: str, suppressed: list[str]) -> None:
    """Create the schema and suppress the expected addresses, as erasures before the expo did."""
    from preference_center import suppression

    app = build_app(url)
    with app.app_context():
        db.create_all()
        for number, address in enumerate(suppressed, 1):
            suppression.add(address, SuppressionReason.ERASED)
            if number % 1000 == 0:
                db.session.commit()
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


# --- measuring inside a side's process ------------------------------------------------------


def _status_kb(key: str) -> int | None:
    """A ``VmRSS``/``VmHWM`` line of /proc/self/status in kB, or None off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


@dataclass
class Measure:
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    rss_before_kb: int = 0
    peak_kb: int = 0
    peak_source: str = ""

    @property
    def growth_kb(self) -> int:
        return max(self.peak_kb - self.rss_before_kb, 0)


@contextmanager
def measured() -> Iterator[Measure]:
    """Wall and CPU time of the block, and the peak RSS reached during it."""
    gc.collect()
    measure = Measure()
    rss = _status_kb("VmRSS")
    reset = _reset_peak()
    measure.rss_before_kb = (
        rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    )
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield measure
    finally:
        measure.seconds = time.perf_counter() - wall
        measure.cpu_seconds = time.process_time() - cpu
        hwm = _status_kb("VmHWM") if reset else None
        if hwm is not None:
            measure.peak_kb, measure.peak_source = hwm, "VmHWM"
        else:  # ru_maxrss is the peak of the whole process life: an upper bound
            measure.peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            measure.peak_source = "ru_maxrss"


def side_import(
    path: Path, url: str, profile: Path | None, breakdown: bool = False
) -> dict[str, Any]:
    """The upload's path on ``path``: preview sniff (timed apart), then the import (timed)."""
    from preference_center import addresses
    from preference_center.services import imports

    steps = _instrument() if breakdown else None

    provenance = imports.Provenance(
        "Bench Expo", date(2026, 11, 20), CollectedBy.SHEET, "bench@example.org"
    )
    app = build_app(url)
    with app.app_context():
        addresses.parse("warm.up@example.org")  # email-validator's lazy tables, not the import
        db.session.execute(select(1))  # the pool's first connection, not the import
        db.session.commit()
        started = time.perf_counter()
        with path.open("rb") as stream:
            info = readers.sniff(stream, FILENAME)  # what start_upload() stores
        sniff_seconds = time.perf_counter() - started
        if info.encoding != "cp1252" or info.delimiter != ";":
            raise SystemExit(f"the preview read the file as {info.encoding} {info.delimiter!r}")
        if info.mapping.get("email") != EMAIL_COLUMN:
            raise SystemExit(f"the preview guessed the wrong email column: {info.mapping}")
        options = {"encoding": info.encoding, "delimiter": info.delimiter, "sheet": info.sheet,
                   "mapping": dict(info.mapping)}  # fmt: skip
        profiler = cProfile.Profile() if profile else None
        with path.open("rb") as stream, measured() as measure:
            if profiler:
                profiler.enable()
            batch = imports.import_contacts(
                stream, filename=FILENAME, provenance=provenance, options=options, language="nl"
            )
            if profiler:
                profiler.disable()
        if profiler and profile:
            profiler.dump_stats(profile)
        rows = batch.rows_read
        counts = dict(batch.counts)
        report_rows = db.session.scalar(
            select(func.count()).select_from(ImportRow).where(ImportRow.batch_id == batch.id)
        )
        contacts = db.session.scalar(select(func.count()).select_from(Contact))
        db.session.remove()
        db.engine.dispose()
    figures = {**_side_figures("import", rows, measure), "counts": counts,
               "report_rows": report_rows, "stored": contacts,
               "sniff_seconds": round(sniff_seconds, 3)}  # fmt: skip
    if steps is not None:
        figures["breakdown"] = {name: {"wall_us": round(wall / rows * 1e6, 1),
                                       "cpu_us": round(cpu / rows * 1e6, 1)}
                                for name, (wall, cpu) in steps.items()}  # fmt: skip
    return figures


#: The import's steps timed by --breakdown: (label, module, attribute). Nested steps are
#: timed inside their parent too (the contact insert inside "new contacts").
BREAKDOWN_STEPS = (
    ("read rows (readers)", "preference_center.services.imports", "_chunks"),
    ("check rows (addresses.parse...)", "preference_center.services.imports", "check_rows"),
    ("lookup: existing contacts", "preference_center.services.import_chunks", "_known_contacts"),
    ("digests (HMAC)", "preference_center.suppression", "digests"),
    ("lookup: suppressed, asked", "preference_center.services.import_chunks", "_found"),
    ("new contacts, with ids", "preference_center.services.import_chunks", "_insert_contacts"),
    ("  of which the insert", "preference_center.services.import_chunks", "_CONTACTS.execute"),
    ("report rows insert", "preference_center.services.import_chunks", "_REPORT.execute"),
    ("whole chunk (write_chunk)", "preference_center.services.imports", "write_chunk"),
)


def _instrument() -> dict[str, list[float]]:
    """Wrap the steps of BREAKDOWN_STEPS with wall and CPU timers; return the totals.

    A generator (the reader) is timed while it makes each item, not while its consumer works.
    CPU is the calling thread's own: on PostgreSQL the inserts run on a helper thread while
    the main thread reads and checks, so their wall times overlap the main thread's steps.
    """
    import functools
    import importlib
    import inspect

    totals: dict[str, list[float]] = {}
    for label, module_name, attribute in BREAKDOWN_STEPS:
        owner: Any = importlib.import_module(module_name)
        *path, name = attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        original = getattr(owner, name)
        total = totals.setdefault(label, [0.0, 0.0])

        def timed(*args: Any, _original: Any = original, _total: list[float] = total,
                  **kwargs: Any) -> Any:  # fmt: skip
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return _original(*args, **kwargs)
            finally:
                _total[0] += time.perf_counter() - wall
                _total[1] += time.thread_time() - cpu

        def timed_generator(*args: Any, _original: Any = original, _total: list[float] = total,
                            **kwargs: Any) -> Any:  # fmt: skip
            items = _original(*args, **kwargs)
            while True:
                wall, cpu = time.perf_counter(), time.thread_time()
                try:
                    item = next(items)
                except StopIteration:
                    return
                finally:
                    _total[0] += time.perf_counter() - wall
                    _total[1] += time.thread_time() - cpu
                yield item

        wrapper = timed_generator if inspect.isgeneratorfunction(original) else timed
        setattr(owner, name, functools.wraps(original)(wrapper))
    return totals


BASELINE_TABLE = Table(
    "bench_baseline_contact",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("email", String(254), nullable=False),
    Column("first_name", String(100)),
    Column("last_name", String(100)),
    Column("company", String(200)),
)
# Two spellings because the drivers' paramstyles differ (sqlite3: qmark, psycopg: format).
INSERT_QMARK = (
    "INSERT INTO bench_baseline_contact (email, first_name, last_name, company) VALUES (?, ?, ?, ?)"
)
INSERT_FORMAT = "INSERT INTO bench_baseline_contact (email, first_name, last_name, company) VALUES (%s, %s, %s, %s)"


def side_baseline(path: Path, url: str) -> dict[str, Any]:
    """csv.reader + validate_email per row + one executemany + one commit (timed)."""
    from email_validator import EmailNotValidError, validate_email

    app = build_app(url)
    with app.app_context():
        engine = db.engine  # the app's engine: same pragmas and driver as the import
    BASELINE_TABLE.create(engine)
    validate_email("warm.up@example.org", check_deliverability=False)
    connection = engine.raw_connection()  # connected before the clock, like the import's pool
    insert = INSERT_QMARK if engine.dialect.paramstyle == "qmark" else INSERT_FORMAT
    rows = invalid = 0
    try:
        with measured() as measure:
            valid: list[tuple[str, str, str, str]] = []
            with path.open(encoding="cp1252", newline="") as source:
                reader = csv.reader(source, delimiter=";")
                next(reader)  # the header
                for cells in reader:
                    rows += 1
                    try:
                        result = validate_email(cells[EMAIL_COLUMN], check_deliverability=False)
                    except EmailNotValidError:
                        invalid += 1
                        continue
                    valid.append((result.normalized, cells[0], cells[1], cells[3]))
            cursor = connection.cursor()
            cursor.executemany(insert, valid)
            connection.commit()
            cursor.close()
    finally:
        connection.close()
    with engine.connect() as check:
        stored = check.scalar(select(func.count()).select_from(BASELINE_TABLE))
    engine.dispose()
    return {**_side_figures("baseline", rows, measure), "counts": {"invalid": invalid},
            "stored": stored}  # fmt: skip


def _side_figures(side: str, rows: int, measure: Measure) -> dict[str, Any]:
    return {
        "side": side,
        "rows": rows,
        "seconds": round(measure.seconds, 3),
        "cpu_seconds": round(measure.cpu_seconds, 3),
        "per_second": round(rows / measure.seconds, 1) if measure.seconds else None,
        "rss_before_mb": round(measure.rss_before_kb / 1024, 1),
        "peak_rss_mb": round(measure.peak_kb / 1024, 1),
        "peak_growth_mb": round(measure.growth_kb / 1024, 1),
        "peak_source": measure.peak_source,
    }


def run_side(
    side: str, path: Path, url: str, profile: Path | None, breakdown: bool = False
) -> dict[str, Any]:
    """Run one side in a fresh interpreter and return what it measured."""
    command = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--file", str(path)]
    if profile and side == "import":
        command += ["--profile", str(profile)]
    if breakdown and side == "import":
        command += ["--breakdown"]
    result = subprocess.run(
        command,
        env={**os.environ, TARGET_ENV: url},
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"the {side} side failed (exit {result.returncode})")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- the run ----------------------------------------------------------------------------------


def cpu_model() -> str:
    with suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def check(expected: Expected, baseline: dict[str, Any], result: dict[str, Any]) -> None:
    """Refuse figures from a run whose outcome is not exactly what the file holds."""
    problems = []
    if result["counts"] != expected.counts:
        problems.append(f"import counts {result['counts']} != expected {expected.counts}")
    if result["rows"] != expected.rows or result["report_rows"] != expected.rows:
        problems.append(f"import read {result['rows']} rows, reported {result['report_rows']}")
    if result["stored"] != expected.counts.get("new", 0):
        problems.append(f"import stored {result['stored']} contacts")
    valid = expected.rows - expected.counts.get("invalid", 0)
    if baseline["rows"] != expected.rows or baseline["stored"] != valid:
        problems.append(f"baseline read {baseline['rows']} rows and stored {baseline['stored']}")
    if baseline["counts"]["invalid"] != expected.counts.get("invalid", 0):
        problems.append(f"baseline found {baseline['counts']['invalid']} invalid addresses")
    if problems:
        raise SystemExit("wrong results:\n  " + "\n  ".join(problems))


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    load = busy_warning()
    with tempfile.TemporaryDirectory(prefix="bench-import-") as folder_name:
        folder = Path(folder_name)
        path = folder / FILENAME
        started = time.perf_counter()
        expected = write_contact_file(path, args.rows)
        print(
            f"generated {args.rows} rows ({path.stat().st_size / 2**20:.1f} MiB) in "
            f"{time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "import": []}
        for _ in range(args.repeat):
            with database(args.database_url, folder, "baseline") as (backend, url):
                runs["baseline"].append(run_side("baseline", path, url, None))
            with database(args.database_url, folder, "import") as (backend, url):
                prepare_import_database(url, expected.suppressed)
                runs["import"].append(run_side("import", path, url, args.profile, args.breakdown))
            check(expected, runs["baseline"][-1], runs["import"][-1])
        file_mib = path.stat().st_size / 2**20
    # The fastest run of each side is the one least disturbed by other work on the machine;
    # memory is the worst run's.
    baseline, result = (
        {**max(runs[side], key=lambda run: run["per_second"]),
         "peak_growth_mb": max(run["peak_growth_mb"] for run in runs[side]),
         "peak_rss_mb": max(run["peak_rss_mb"] for run in runs[side])}
        for side in ("baseline", "import")
    )  # fmt: skip
    ratio = result["per_second"] / baseline["per_second"]
    memory_checked = args.rows >= MEMORY_GOAL_ROWS
    goals = {
        "rate": {"goal": RATE_GOAL, "value": result["per_second"],
                 "passed": result["per_second"] >= RATE_GOAL},
        "ratio": {"goal": RATIO_GOAL, "value": round(ratio, 3), "passed": ratio >= RATIO_GOAL},
        "memory": {"goal_mb": MEMORY_GOAL_MB, "goal_rows": MEMORY_GOAL_ROWS,
                   "value_mb": result["peak_growth_mb"],
                   "passed": (result["peak_growth_mb"] < MEMORY_GOAL_MB) if memory_checked else None},
    }  # fmt: skip
    return {
        "benchmark": "import",
        "backend": backend,
        "rows": args.rows,
        "file_mib": round(file_mib, 1),
        "expected": expected.counts,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "load_average": round(load, 2),
        "profiled": args.profile is not None,
        "breakdown": args.breakdown,
        "load_average_end": round(os.getloadavg()[0], 2),
        "repeat": args.repeat,
        "sides": [baseline, result],
        "runs": runs,
        "ratio": round(ratio, 3),
        "goals": goals,
        "passed": all(goal["passed"] is not False for goal in goals.values()),
    }


def _verdict(passed: bool | None) -> str:
    return "not checked" if passed is None else ("PASS" if passed else "BELOW")


def print_table(results: dict[str, Any]) -> None:
    print(
        f"Contact import, {results['rows']} rows ({results['file_mib']} MiB cp1252 CSV), "
        f"{results['backend']}, Python {results['python']}, {results['cpu_model']}, "
        f"load average {results['load_average']:.2f} (at the end "
        f"{results['load_average_end']:.2f}) on {results['cpus']} CPUs"
        + (" [PROFILED: the import is slowed by cProfile]" if results["profiled"] else "")
        + (" [STEPS TIMED: a little slower]" if results["breakdown"] else "")
    )
    if results["repeat"] > 1:
        print(f"fastest of {results['repeat']} runs per side; memory from the worst run")
    print("expected and found: " + ", ".join(f"{k} {v}" for k, v in results["expected"].items()))
    # peak +MB: peak RSS during the timed call minus RSS just before it; peak MB: absolute.
    print(
        f"{'side':<10}{'rows':>9}{'seconds':>9}{'rows/s':>10}{'cpu s':>8}{'peak +MB':>10}{'peak MB':>9}"
    )
    for side in results["sides"]:
        print(
            f"{side['side']:<10}{side['rows']:>9}{side['seconds']:>9.2f}{side['per_second']:>10.0f}"
            f"{side['cpu_seconds']:>8.2f}{side['peak_growth_mb']:>10.1f}{side['peak_rss_mb']:>9.1f}"
        )
    sniff = results["sides"][1]["sniff_seconds"]
    print(f"(the upload's preview sniff, not counted in the import: {sniff:.2f} s)")
    goals = results["goals"]
    print(
        f"import rows/s: {goals['rate']['value']:.0f} (goal {RATE_GOAL}): {_verdict(goals['rate']['passed'])}"
    )
    print(
        f"ratio import/baseline: {results['ratio']:.2f} (goal {RATIO_GOAL}): {_verdict(goals['ratio']['passed'])}"
    )
    memory = goals["memory"]
    note = "" if memory["passed"] is not None else f"; run --rows {MEMORY_GOAL_ROWS} to check"
    print(
        f"import peak memory: +{memory['value_mb']:.1f} MB for {results['rows']} rows "
        f"(goal < {MEMORY_GOAL_MB} MB at {MEMORY_GOAL_ROWS} rows): {_verdict(memory['passed'])}{note}"
    )
    steps = results["sides"][1].get("breakdown")
    if steps:
        print("import steps, per row of the file (the fastest run):")
        print(f"  {'step':<34}{'wall us':>9}{'cpu us':>9}")
        for name, step in steps.items():
            print(f"  {name:<34}{step['wall_us']:>9.1f}{step['cpu_us']:>9.1f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "-n", "--rows", type=int, default=100_000, help="data rows in the file (default 100000)"
    )
    parser.add_argument(
        "--database-url",
        help="PostgreSQL server to run on, e.g. postgresql+psycopg://postgres@127.0.0.1/postgres; "
        "a throwaway database is created there per side and dropped (default: SQLite files)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run both sides this many times, each on a fresh database, and keep the fastest "
        "run of each (for a busy machine; default 1)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="write a cProfile of the timed import to FILE (slows the import side)",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="time the import's steps (reader, checks, lookups, inserts) per row; the timers "
        "add a little to the import's own figures",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit with status 3 when a checked goal is missed"
    )
    # Internal: one side in this fresh process (the database URL comes in TARGET_ENV).
    parser.add_argument("--side", choices=("import", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be positive")
    if args.side and (args.file is None or not os.environ.get(TARGET_ENV)):
        parser.error(f"--side needs --file and {TARGET_ENV}")
    return args


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SystemExit unwinds the with-blocks: the temporary files and databases are removed.
    sys.exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.side:
        url = os.environ[TARGET_ENV]
        if args.side == "import":
            figures = side_import(args.file, url, args.profile, args.breakdown)
        else:
            figures = side_baseline(args.file, url)
        print(json.dumps(figures))
        return 0
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return report(benchmark(args), args, print_table)


if __name__ == "__main__":
    sys.exit(main())

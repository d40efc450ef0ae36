"""Helpers the ``bench_*.py`` scripts share.

The scripts run as ``python benchmarks/bench_….py``, so this folder is first on ``sys.path``
and ``from common import …`` finds this file; so do their spawned children, which inherit
that path, and bench_http's gunicorn servers, which get this folder through ``--pythonpath``.
It is not named ``bench_*.py``, so ``run_all.py`` does not run it as a benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


@contextmanager
def postgres_database(admin_url: str) -> Iterator[tuple[str, str]]:
    """Yield ("postgresql", URL) of a throwaway database created on the server at ``admin_url``.

    The database is dropped afterwards, even when a connection to it is still open.
    """
    url = make_url(admin_url)
    if url.get_backend_name() != "postgresql":
        raise SystemExit(f"--database-url must be a PostgreSQL URL, not {url.get_backend_name()}")
    name = f"pc_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield "postgresql", url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def throwaway_database(admin_url: str | None, prefix: str) -> Iterator[tuple[str, str]]:
    """Yield (backend name, URL) of an empty database that is removed afterwards.

    SQLite in a temporary folder when ``admin_url`` is None, else a database on that
    PostgreSQL server (see :func:`postgres_database`).
    """
    if admin_url is None:
        with tempfile.TemporaryDirectory(prefix=prefix) as folder:
            yield "sqlite", f"sqlite:///{Path(folder) / 'bench.sqlite3'}"
        return
    with postgres_database(admin_url) as target:
        yield target


def busy_warning() -> float:
    """The 1-minute load average; warn when other work will skew the figures.

    The benchmarks share the machine's CPUs with whatever else runs on it, so a busy neighbour
    shows up in their figures at once; the load is recorded with them.
    """
    load = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    if load > cpus / 2:
        print(
            f"warning: load average {load:.2f} on {cpus} CPUs; the figures will be noisy",
            file=sys.stderr,
        )
    return load


def report(
    results: dict[str, Any], args: argparse.Namespace, print_table: Callable[[dict[str, Any]], None]
) -> int:
    """Print ``results`` as JSON (``--json``) or as the script's table; return the exit status.

    The status is 3 when ``--check`` was given and the run missed its goal, else 0.
    """
    if args.json:
        print(json.dumps(results))
    else:
        print_table(results)
    return 3 if args.check and not results["passed"] else 0

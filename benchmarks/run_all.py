"""Run every ``benchmarks/bench_*.py`` in turn; exit non-zero if any of them failed.

``make bench`` calls this. Arguments are passed through to every script unchanged
(``make bench`` passes none; ``.venv/bin/python benchmarks/run_all.py -n 1000`` runs smaller).
Scripts run one after the other, never in parallel, so they don't steal CPU from each other.

A script that sets ``ACCEPTS_DATABASE_URL = True`` at module level runs on its default
database (SQLite) and, when the environment variable ``BENCH_DATABASE_URL`` is set, a second
time with ``--database-url $BENCH_DATABASE_URL`` (a PostgreSQL server URL such as
``postgresql+psycopg://postgres@127.0.0.1/postgres``). The marker is read from the source, so
this runner imports nothing from the project and works even when a benchmark cannot import.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def python() -> str:
    """The virtualenv's interpreter, whatever interpreter started this runner."""
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def accepts_database_url(script: Path) -> bool:
    """Whether ``script`` declares ``ACCEPTS_DATABASE_URL = True`` at module level."""
    tree = ast.parse(script.read_text(encoding="utf-8"), filename=str(script))
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = {t.id for t in targets if isinstance(t, ast.Name)}
            if "ACCEPTS_DATABASE_URL" in names and isinstance(node.value, ast.Constant):
                return node.value.value is True
    return False


def runs(script: Path, argv: list[str]) -> list[list[str]]:
    """The command lines to run ``script`` with: SQLite, then PostgreSQL if configured."""
    commands = [[python(), str(script), *argv]]
    database_url = os.environ.get("BENCH_DATABASE_URL")
    if database_url and accepts_database_url(script):
        commands.append([python(), str(script), *argv, "--database-url", database_url])
    return commands


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if not scripts:
        print("no benchmarks/bench_*.py found", file=sys.stderr)
        return 1
    failed: list[str] = []
    for script in scripts:
        for command in runs(script, argv):
            label = " ".join([script.relative_to(ROOT).as_posix(), *command[2:]])
            if database_url := os.environ.get("BENCH_DATABASE_URL"):
                # The URL may carry a password: name the variable, not its value.
                label = label.replace(database_url, "$BENCH_DATABASE_URL")
            print(f"==> {label}", flush=True)
            # Run from the project root so the scripts find the package, templates and .venv.
            result = subprocess.run(command, cwd=ROOT, check=False)
            if result.returncode != 0:
                print(f"==> FAILED ({result.returncode}): {label}", flush=True)
                failed.append(label)
            print(flush=True)
    if failed:
        print(f"{len(failed)} benchmark run(s) failed:", *failed, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

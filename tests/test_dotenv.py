"""A .env file is honoured by the flask command (and by wsgi.py beside it)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_settings_in_a_dotenv_file_are_read_by_the_flask_command(tmp_path):
    database = tmp_path / "from-dotenv.sqlite3"
    (tmp_path / ".env").write_text(
        "FLASK_APP=preference_center\n"
        "FLASK_SECRET_KEY=from-the-dotenv-file\n"
        f"FLASK_SQLALCHEMY_DATABASE_URI=sqlite:///{database}\n"
        "FLASK_SITE_NAME=Voorbeeld vzw\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    result = subprocess.run(
        [sys.executable, "-m", "flask", "db", "upgrade"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert database.exists(), "the database named in .env was created"
    seeded = subprocess.run(
        [sys.executable, "-m", "flask", "consent-texts", "seed"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "flask", "consent-texts", "list", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "Voorbeeld vzw" in listed.stdout


def test_without_a_secret_the_flask_command_refuses_and_names_the_variable(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    env["FLASK_APP"] = "preference_center"
    result = subprocess.run(
        [sys.executable, "-m", "flask", "topics", "list"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "FLASK_SECRET_KEY" in result.stderr

"""WSGI entry point: ``gunicorn wsgi:app``.

Settings come from the environment (``FLASK_*``) and from a ``.env`` file beside this one;
variables already set in the environment win over the file.
"""

from pathlib import Path

from dotenv import load_dotenv

from preference_center import create_app

load_dotenv(Path(__file__).resolve().parent / ".env", override=False)
app = create_app()

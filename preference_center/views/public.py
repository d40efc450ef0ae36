"""The public pages: the start page, for now; the signup form builds on it."""

from __future__ import annotations

from flask import Blueprint, render_template

from ..services import system, topics

bp = Blueprint("public", __name__)


@bp.get("/")
def index() -> str:
    return render_template("public/index.html", topics=topics.public_topics())


@bp.get("/health")
def health() -> dict[str, object]:
    """Liveness for load balancers and monitoring: the database answers, the outbox moves."""
    return system.health()

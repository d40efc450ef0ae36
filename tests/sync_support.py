"""Builders for the export and sync tests: confirmed subscribers and API calls."""

from __future__ import annotations

from typing import Any

from builders import request_directly
from sqlalchemy import select

from preference_center.extensions import db
from preference_center.models import Contact, SignupRequest
from preference_center.services import api_tokens, subscriptions

CLIENT = subscriptions.Client(ip="192.0.2.10", user_agent="pytest")


def confirmed(app: Any, email: str, slugs=("newsletter",), **kwargs: Any) -> str:
    """A subscriber through the service-level double opt-in; returns the public id."""
    request_directly(app, email, slugs=slugs, **kwargs)
    with app.app_context():
        request = db.session.scalar(
            select(SignupRequest)
            .join(Contact, Contact.id == SignupRequest.contact_id)
            .where(Contact.email == email.lower())
            .order_by(SignupRequest.id.desc())
        )
        public_id = request.public_id
        db.session.remove()
        subscriptions.confirm(public_id, CLIENT)
        contact_id = db.session.scalar(
            select(Contact.public_id).where(Contact.email == email.lower())
        )
        db.session.remove()
        return contact_id


def contact_id(app: Any, email: str) -> int:
    with app.app_context():
        value = db.session.scalar(select(Contact.id).where(Contact.email == email.lower()))
        db.session.remove()
        return value


def new_token(app: Any, name: str = "mailing-list", topics: list[str] | None = None) -> str:
    with app.app_context():
        _, secret = api_tokens.create(name, topics, actor="pytest")
        db.session.remove()
        return secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def read_feed(client: Any, secret: str, after: str | None = None, limit: int = 500) -> dict:
    query = f"?limit={limit}" + (f"&after={after}" if after else "")
    response = client.get(f"/api/v1/changes{query}", headers=bearer(secret))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def read_all(
    client: Any, secret: str, after: str | None = None, limit: int = 500
) -> tuple[list[dict], str | None]:
    items: list[dict] = []
    while True:
        page = read_feed(client, secret, after, limit)
        items.extend(page["items"])
        after = page["cursor"]
        if not page["has_more"]:
            return items, after

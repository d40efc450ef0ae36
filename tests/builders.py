"""Plain builder functions for test data and for walking the public flows (no factories)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from conftest import run_worker

from preference_center.extensions import db
from preference_center.services import consent, subscriptions, topics

DEFAULT_TOPICS = ("newsletter",)


def seed_topics(app: Any) -> None:
    with app.app_context():
        topics.seed_examples()
        db.session.remove()


def hidden(html: str, name: str) -> str:
    """The value of a form field in a rendered page (hidden inputs and the CSRF token)."""
    match = re.search(rf'name="{name}"[^>]*value="([^"]*)"', html) or re.search(
        rf'value="([^"]*)"[^>]*name="{name}"', html
    )
    assert match, f"no field {name!r} in the page"
    return match.group(1)


def signup_form_data(page: str, email: str, **fields: Any) -> dict[str, Any]:
    data = {
        "csrf_token": hidden(page, "csrf_token"),
        "consent_text_id": hidden(page, "consent_text_id"),
        "started": hidden(page, "started"),
        "source": hidden(page, "source"),
        "email": email,
        "language": "nl",
        "topics": list(DEFAULT_TOPICS),
        "consent": "y",
    }
    data.update(fields)
    return data


def post_signup(
    client: Any, email: str, query: str = "", headers: dict | None = None, **fields: Any
) -> Any:
    """Open the form as a browser would, then send it."""
    page = client.get(f"/{query}", headers=headers or {}).get_data(as_text=True)
    return client.post(
        f"/{query}", data=signup_form_data(page, email, **fields), headers=headers or {}
    )


def links(message: Any) -> dict[str, str]:
    """The confirm and not-me paths of a confirmation email."""
    text = message.get_body(("plain",)).get_content()
    found = {}
    for url in re.findall(r"https://prefs\.example\.be/\S+", text):
        path = urlsplit(url).path
        if path.startswith("/confirm/"):
            found["confirm"] = path
        elif path.startswith("/not-me/"):
            found["not_me"] = path
    return found


def click_and_press(client: Any, path: str, **extra: Any) -> Any:
    """Open a link's page and press its button, as a person does.

    A browser sends the page as Referer on the POST (Referrer-Policy: same-origin), which
    Flask-WTF requires over HTTPS; so do we.
    """
    page = client.get(path).get_data(as_text=True)
    return press(client, path, hidden(page, "csrf_token"), **extra)


def press(client: Any, path: str, csrf_token: str, **extra: Any) -> Any:
    headers = {"Referer": f"https://prefs.example.be{path}", **extra.pop("headers", {})}
    return client.post(path, data={"csrf_token": csrf_token, **extra}, headers=headers)


def subscribe(app: Any, client: Any, smtp: Any, email: str, **fields: Any) -> Any:
    """The whole double opt-in through the web: form, email, link, button."""
    response = post_signup(client, email, **fields)
    assert response.status_code == 200, response.get_data(as_text=True)
    run_worker(app)
    message = smtp.handler.to(email_ascii(email))[-1]
    return click_and_press(client, links(message)["confirm"])


def email_ascii(email: str) -> str:
    from preference_center import addresses

    return addresses.parse(email).ascii


def request_directly(
    app: Any,
    email: str,
    slugs=DEFAULT_TOPICS,
    language: str = "nl",
    ip: str = "192.0.2.10",
    **kwargs: Any,
) -> subscriptions.Outcome:
    """Service-level signup, for tests that are not about the form."""
    with app.app_context():
        text = consent.current(language)
        outcome = subscriptions.request_subscription(
            email,
            topic_slugs=list(slugs),
            language=language,
            consent_text_id=text.id,
            client=subscriptions.Client(ip=ip, user_agent="pytest"),
            **kwargs,
        )
        db.session.remove()
        return outcome

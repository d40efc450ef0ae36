"""No English on Dutch and French pages: every page is compared with the catalogues.

For each page a person can reach, rendered in nl and fr, no English source string of the
catalogue may appear in the visible text. A string that was added to a template but not to the
catalogues, or a page that forgot to pass its language, shows up here.
"""

from __future__ import annotations

import html
import re

import pytest
from babel.messages.pofile import read_po
from builders import hidden, links, post_signup, seed_topics
from conftest import run_worker
from sqlalchemy import select

from preference_center import tokens
from preference_center.config import TRANSLATIONS_DIR
from preference_center.extensions import db
from preference_center.models import Contact
from preference_center.services import preferences

ADDRESS = "lotte@example.be"


def english_fragments(language: str) -> set[str]:
    """Pieces of English source text long enough to be unmistakable, per catalogue."""
    path = TRANSLATIONS_DIR / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        catalogue = read_po(handle, locale=language)
    fragments = set()
    for message in catalogue:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        translation = " ".join(strings)
        for source in ids:
            for piece in re.split(r"%\(\w+\)s|[“”«»:]", source):
                piece = piece.strip(" .,;!?")
                if len(piece) >= 14 and piece not in translation:
                    fragments.add(piece)
    return fragments


def visible_text(page: str) -> str:
    page = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", page, flags=re.S)
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    return " ".join(text.split())


def pages(app, client, smtp, language):
    """Every page of the public and preference flows, in ``language``."""
    seed_topics(app)
    got = {}
    headers = {"Accept-Language": language}
    got["start"] = client.get("/", headers=headers)
    got["check inbox"] = post_signup(client, ADDRESS, headers=headers, language=language)
    got["bad form"] = post_signup(client, "not an address", headers=headers, language=language)
    run_worker(app)
    found = links(smtp.handler.to(ADDRESS)[-1])
    got["confirm"] = client.get(found["confirm"])
    got["not me"] = client.get(found["not_me"])
    referer = {"Referer": "https://prefs.example.be/", **headers}
    got["confirmed"] = client.post(
        found["confirm"],
        data={"csrf_token": hidden(got["confirm"].get_data(as_text=True), "csrf_token")},
        headers=referer,
    )
    with app.app_context():
        contact = db.session.scalar(select(Contact).where(Contact.email == ADDRESS))
        manage = tokens.make(tokens.Purpose.MANAGE, preferences.manage_payload(contact))
        unsubscribe = tokens.make(tokens.Purpose.UNSUBSCRIBE, {"c": contact.public_id, "t": None})
        export = tokens.make(tokens.Purpose.EXPORT, preferences.manage_payload(contact))
    got["preferences"] = client.get(f"/manage/{manage}", headers=headers)
    got["what we hold"] = client.get(f"/manage/{manage}/data", headers=headers)
    got["forget"] = client.get(f"/manage/{manage}/forget", headers=headers)
    got["export"] = client.get(f"/export/{export}", headers=headers)
    got["unsubscribe"] = client.get(f"/u/{unsubscribe}", headers=headers)
    got["unsubscribed"] = client.post(
        f"/u/{unsubscribe}", data={"List-Unsubscribe": "One-Click"}, headers=headers
    )
    got["invalid link"] = client.get("/confirm/not-a-token", headers=headers)
    got["not found"] = client.get("/no-such-page", headers=headers)
    return got


@pytest.mark.parametrize("language", ["nl", "fr"])
def test_no_english_source_text_on_dutch_and_french_pages(app, client, smtp, language):
    fragments = english_fragments(language)
    assert len(fragments) > 100
    problems = {}
    for name, response in pages(app, client, smtp, language).items():
        assert response.status_code < 500, name
        text = visible_text(response.get_data(as_text=True))
        found = sorted(f for f in fragments if f in text)
        if found:
            problems[name] = found
    assert problems == {}


@pytest.mark.parametrize("language", ["nl", "fr"])
def test_no_english_in_the_emails_either(app, client, smtp, language):
    fragments = english_fragments(language)
    pages(app, client, smtp, language)
    run_worker(app)
    assert len(smtp.messages) >= 2, "the confirmation and the welcome email"
    for message in smtp.messages:
        assert message["Content-Language"] == language
        for part in ("plain", "html"):
            text = visible_text(message.get_body((part,)).get_content())
            found = sorted(f for f in fragments if f in text)
            assert found == [], (message["Subject"], part)
        assert not any(f in message["Subject"] for f in fragments)

"""Emails render exactly as through Flask's render_template (templating.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from flask import render_template, template_rendered
from flask_babel import force_locale
from jinja2 import TemplateNotFound

from preference_center.config import PROJECT_ROOT
from preference_center.mail import messages

TEMPLATES = sorted(p.name for p in (PROJECT_ROOT / "templates" / "email").iterdir() if p.is_dir())

#: Every variable the email templates use, with markup in the free text to check escaping.
CONTEXT = {
    "first_name": 'Marie <b>"&"</b>',
    "recipient_name": "Marie Dubois",
    "site_name": "Voorkeuren & Co",
    "address": "marie@example.be",
    "masked_address": "m***@example.be",
    "new_address": "n***@example.be",
    "old_address": "o***@example.be",
    "topic_names": ["Nieuws & events", "<Webinars>"],
    "site_url": "https://prefs.example.be/",
    "confirm_url": "https://prefs.example.be/confirm/abc?x=1&y=2",
    "not_me_url": "https://prefs.example.be/not-me/abc",
    "manage_url": "https://prefs.example.be/p/abc",
    "unsubscribe_url": "https://prefs.example.be/u/abc",
    "unsubscribe_token": "abc",
    "export_url": "https://prefs.example.be/export/abc",
    "refuse_url": "https://prefs.example.be/refuse/abc",
    "valid_days": 7,
    "valid_hours": 1,
    "not_me_days": 30,
    "event_name": "Beurs <2026>",
    "event_date": date(2026, 3, 14),
    "deadline": datetime(2026, 4, 1, 12, 0, tzinfo=UTC),
}


def flask_render(template: str, language: str, context: dict) -> messages.Rendered:
    """The rendering as it was: render_template for each template under force_locale."""
    with force_locale(language):
        subject = render_template(f"email/{template}/subject.txt", **context)
        text = render_template(f"email/{template}/body.txt", **context)
        try:
            html = render_template(f"email/{template}/body.html", **context)
        except TemplateNotFound:
            html = None
    return messages.Rendered(" ".join(subject.split()), text, html, language)


@pytest.mark.parametrize("language", ["nl", "fr", "en"])
@pytest.mark.parametrize("template", TEMPLATES)
def test_every_email_template_renders_as_with_render_template(app, template, language):
    with app.app_context():
        for context in (
            CONTEXT,
            {**CONTEXT, "topic_names": [], "valid_days": 1, "event_date": None},
        ):
            context = {**context, "language": language}
            assert messages._render(template, language, context) == flask_render(
                template, language, context
            )


def test_the_template_rendered_signal_still_fires_for_each_template(app):
    seen = []

    def record(sender, template, context, **extra):
        seen.append(template.name)

    with app.app_context(), template_rendered.connected_to(record, app):
        messages._render("test", "nl", {**CONTEXT, "language": "nl"})
    assert seen == ["email/test/subject.txt", "email/test/body.txt", "email/test/body.html"]

"""The public forms render exactly the markup WTForms' own widgets give.

forms.Form renders inputs, single selects and labels through a faster path than WTForms'
widgets (see its docstring); these tests hold it to the same output, character for character,
for every field of every public form, in every language, empty, filled and submitted.
"""

from __future__ import annotations

from datetime import date

import pytest
from markupsafe import Markup
from wtforms.fields.choices import SelectChoice
from wtforms.fields.core import Label

from preference_center import create_app
from preference_center.forms import (
    ButtonForm,
    EmailChangeForm,
    LeaveReasonForm,
    ManageLinkForm,
    PreferencesForm,
    SignupForm,
)

FORMS = [SignupForm, ButtonForm, PreferencesForm, EmailChangeForm, LeaveReasonForm, ManageLinkForm]
#: What a field may hold or be sent: markup, quotes and ampersands must come out the same.
TRICKY = ['Jan "Jean" <b>Peeters</b> & Co', Markup('<i class="x">M&amp;M</i>'), ""]
RENDER_OPTIONS = [
    {},
    {"type": "email"},
    {"type": "date", "min": "2026-12-01"},
    {"min": date(2026, 12, 1), "max": date(2027, 6, 30)},
    {"class_": "wide", "data_role": "name", "aria_describedby": "hint", "required": True},
    {"disabled": False, "placeholder": 'say "hi" & <wave>'},
]


@pytest.fixture(scope="module")
def app():
    return create_app(
        {"TESTING": True, "SECRET_KEY": "form-rendering", "SQLALCHEMY_DATABASE_URI": "sqlite://"}
    )


def with_choices(form):
    """The signup form's topics come from the database; any will do here."""
    if isinstance(form, SignupForm):
        form.topics.choices = [SelectChoice("news", 'News & "more"'), SelectChoice("events")]
    return form


def assert_renders_as_wtforms(form):
    for field in with_choices(form):
        for options in RENDER_OPTIONS:
            wtforms = field.widget(field, **dict(field.render_kw or {}, **options))
            assert field(**options) == wtforms, (field.name, options)
        wtforms_label = Label(field.label.field_id, field.label.text)
        assert field.label() == wtforms_label()
        assert field.label("Other <text>", class_="x") == wtforms_label("Other <text>", class_="x")
        assert str(field.label) == str(wtforms_label)


@pytest.mark.parametrize("language", ["nl", "fr", "en"])
@pytest.mark.parametrize("form_class", FORMS)
def test_an_empty_form_renders_as_wtforms_renders_it(app, language, form_class):
    with app.test_request_context("/", headers={"Accept-Language": language}):
        assert_renders_as_wtforms(form_class())


@pytest.mark.parametrize("value", TRICKY)
@pytest.mark.parametrize("form_class", FORMS)
def test_a_filled_in_form_renders_as_wtforms_renders_it(app, form_class, value):
    data = {
        "email": value,
        "new_email": value,
        "first_name": value,
        "comment": value,
        "source": value,
        "version": value,
        "language": "fr",
        "reason": "other",
        "paused_until": date(2026, 12, 24),
    }
    with app.test_request_context("/", headers={"Accept-Language": "nl"}):
        assert_renders_as_wtforms(form_class(formdata=None, data=data))


@pytest.mark.parametrize("value", TRICKY)
@pytest.mark.parametrize("form_class", FORMS)
def test_a_submitted_form_renders_as_wtforms_renders_it(app, form_class, value):
    posted = {
        "email": value,
        "new_email": value,
        "first_name": value,
        "comment": value,
        "version": value,
        "language": "not-a-language",
        "reason": "too-many",
        "paused_until": "24/12/2026",  # not a date: the page shows what was sent
        "topics": ["news", "unknown"],
    }
    with app.test_request_context("/", method="POST", data=posted):
        form = with_choices(form_class())
        form.validate()
        assert_renders_as_wtforms(form)

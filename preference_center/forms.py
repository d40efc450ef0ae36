"""Flask-WTF forms. Labels are lazy strings, so they follow the page's language."""

from __future__ import annotations

from functools import cache
from typing import Any

from babel.support import NullTranslations, Translations
from flask import current_app
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.i18n import messages_path
from wtforms.validators import DataRequired, Length, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from . import addresses
from .config import SUPPORTED_LOCALES
from .i18n import NATIVE_NAMES

#: What to tell a person for each reason addresses.parse() refuses an address.
ADDRESS_ERRORS = {
    "empty": _l("Please enter your email address."),
    "non_ascii_local": _l(
        "We cannot send email to addresses with accented or non-Latin letters before the @. "
        "Please use another address."
    ),
    "local_too_long": _l("The part before the @ is too long (at most 64 characters)."),
    "too_long": _l("This email address is too long."),
    "domain": _l("The part after the @ is not a valid domain name."),
    "undeliverable": _l("This domain does not seem to receive email."),
    "syntax": _l("This is not a valid email address, e.g. jan.peeters@example.be."),
}


def address_error(reason: str) -> str:
    """The translated message for an :class:`addresses.InvalidAddress` reason."""
    return str(ADDRESS_ERRORS.get(reason, ADDRESS_ERRORS["syntax"]))


def valid_address(form: FlaskForm, field: StringField) -> None:
    """Check the address while the form is validated, so every error shows at once."""
    try:
        addresses.parse(field.data or "")
    except addresses.InvalidAddress as exc:
        raise ValidationError(address_error(exc.reason)) from None


def no_line_breaks(form: FlaskForm, field: StringField) -> None:
    """Nothing typed by a visitor may carry a line break towards a mail header (D8)."""
    if field.data and any(ch in field.data for ch in "\r\n\0"):
        raise ValidationError(_l("Please use a single line."))


class MultiCheckboxField(SelectMultipleField):
    """Checkboxes, none ticked unless the visitor ticks them (no pre-ticked consent)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


@cache
def _wtforms_catalogue(locale: str) -> NullTranslations:
    """WTForms' own messages in ``locale``: files of the installed package, read once."""
    return Translations.load(messages_path(), [locale], domain="wtforms")


class _WTFormsMessages:
    """WTForms' messages in the page's language, as Flask-WTF gives them, without re-reading
    the catalogue file for every request (Flask-WTF does, whenever a form is built: every
    field without a label asks for one, so each page with a form paid about 0.3 ms)."""

    def gettext(self, string: str) -> str:
        return _wtforms_catalogue(str(get_locale())).ugettext(string)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return _wtforms_catalogue(str(get_locale())).ungettext(singular, plural, n)


_WTFORMS_MESSAGES = _WTFormsMessages()


class Form(FlaskForm):
    """The base of the public forms: Flask-WTF's, with WTForms' messages read once."""

    class Meta(FlaskForm.Meta):
        def get_translations(self, form: Any) -> Any:
            if not current_app.config.get("WTF_I18N_ENABLED", True):
                return super().get_translations(form)
            return _WTFORMS_MESSAGES


class SignupForm(Form):
    email = StringField(
        _l("Email address"),
        validators=[
            DataRequired(_l("Please enter your email address.")),
            Length(max=320),
            valid_address,
        ],
        render_kw={"autocomplete": "email", "inputmode": "email", "spellcheck": "false"},
    )
    first_name = StringField(
        _l("First name (optional)"),
        validators=[Optional(), Length(max=100), no_line_breaks],
        render_kw={"autocomplete": "given-name"},
    )
    language = SelectField(
        _l("Language of our emails"),
        choices=[SelectChoice(code, NATIVE_NAMES[code]) for code in SUPPORTED_LOCALES],
    )
    topics = MultiCheckboxField(
        _l("What would you like to receive?"),
        validators=[DataRequired(_l("Please choose at least one topic."))],
    )
    consent = BooleanField(validators=[DataRequired(_l("Please tick this box to subscribe."))])
    consent_text_id = HiddenField()
    source = HiddenField()
    #: A signed timestamp of when the form was shown: too fast or too old means a bot (C5).
    started = HiddenField()
    #: The honeypot: hidden from people, filled in by naive bots (C5).
    website = StringField(
        _l("Leave this field empty"),
        render_kw={"autocomplete": "off", "tabindex": "-1"},
    )


class ButtonForm(Form):
    """A form that is only a button and its CSRF token: every link's POST (B1, B7)."""


class PreferencesForm(Form):
    """The preference page. Topics and their frequencies are read from the request by name
    (``topic-<slug>``, ``frequency-<slug>``) because the list of topics is data."""

    version = HiddenField()
    consent_text_id = HiddenField()
    first_name = StringField(
        _l("First name"),
        validators=[Optional(), Length(max=100), no_line_breaks],
        render_kw={"autocomplete": "given-name"},
    )
    language = SelectField(
        _l("Language of our emails"),
        choices=[SelectChoice(code, NATIVE_NAMES[code]) for code in SUPPORTED_LOCALES],
    )
    paused_until = DateField(_l("Pause all emails until"), validators=[Optional()])


class EmailChangeForm(Form):
    new_email = StringField(
        _l("New email address"),
        validators=[
            DataRequired(_l("Please enter your email address.")),
            Length(max=320),
            valid_address,
        ],
        render_kw={"autocomplete": "email", "inputmode": "email", "spellcheck": "false"},
    )


class LeaveReasonForm(Form):
    reason = RadioField(
        _l("Why are you leaving? (optional)"),
        choices=[
            SelectChoice("too-many", _l("I receive too many emails")),
            SelectChoice("not-relevant", _l("The content is not relevant to me")),
            SelectChoice("never-signed-up", _l("I never signed up")),
            SelectChoice("other", _l("Another reason")),
        ],
        validators=[Optional()],
    )
    comment = TextAreaField(
        _l("Anything else you want to tell us? (optional)"),
        validators=[Optional(), Length(max=500)],
    )


class ManageLinkForm(Form):
    email = StringField(
        _l("Email address"),
        validators=[DataRequired(_l("Please enter your email address.")), Length(max=320)],
        render_kw={"autocomplete": "email", "inputmode": "email", "spellcheck": "false"},
    )

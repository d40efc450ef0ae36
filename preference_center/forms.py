"""Flask-WTF forms. Labels are lazy strings, so they follow the page's language."""

from __future__ import annotations

from functools import cache
from typing import Any

from babel.support import NullTranslations, Translations
from flask import current_app
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from markupsafe import Markup, escape
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
from wtforms.fields.choices import Choice, SelectChoice
from wtforms.fields.core import Label
from wtforms.i18n import messages_path
from wtforms.validators import DataRequired, Length, Optional, ValidationError
from wtforms.widgets import CheckboxInput, DateInput, Input, ListWidget, Select
from wtforms.widgets.core import clean_key

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


def _attributes(attributes: dict[str, Any]) -> str:
    """What WTForms' ``html_params`` renders, character for character, without the
    ``Markup.format`` it runs per attribute (a ``string.Formatter`` pass each time)."""
    parts = []
    for key, value in sorted(attributes.items()):
        name = str(escape(clean_key(key)))
        if value is True:
            parts.append(name)
        elif value is not False:
            # escape() turns quotes into &#34;; one already in Markup becomes &quot;, as there.
            parts.append(f'{name}="{str(escape(value)).replace(chr(34), "&quot;")}"')
    return " ".join(parts)


def _html(text: str) -> Markup:
    """Markup from text whose every value went through escape() or _attributes()."""
    return Markup(text)  # noqa: S704 - built only from escaped parts


def _validation_attributes(field: Any, widget: Any, attributes: dict[str, Any]) -> None:
    """The attributes a widget takes from the field's flags (``required``, ``maxlength``...)."""
    flags = vars(field.flags)
    for name in widget.validation_attrs:
        if name in flags and name not in attributes:
            value = flags[name]
            attributes[name] = value() if callable(value) else value


def _render_input(field: Any, widget: Input, attributes: dict[str, Any]) -> Markup:
    """``Input.__call__``, with ``_attributes``."""
    attributes.setdefault("id", field.id)
    attributes.setdefault("type", widget.input_type)
    if "value" not in attributes:
        attributes["value"] = field._value()
    _validation_attributes(field, widget, attributes)
    return _html(f"<input {_attributes({'name': field.name, **attributes})}>")


def _render_date(field: Any, widget: Input, attributes: dict[str, Any]) -> Markup:
    """The date and time inputs' ``__call__`` (bounds written in the field's format)."""
    date_format = getattr(field, "format", None)
    if date_format is not None:
        date_format = date_format[0] if isinstance(date_format, list) else date_format
        for name in ("min", "max"):
            value = attributes.get(name, getattr(field.flags, name, None))
            if callable(value):
                value = value()
            if hasattr(value, "strftime"):
                attributes[name] = value.strftime(date_format)
    return _render_input(field, widget, attributes)


def _render_select(field: Any, widget: Select, attributes: dict[str, Any]) -> Markup | None:
    """``Select.__call__`` for a single choice without groups (None: let WTForms do it)."""
    choices = field.iter_choices()
    if not all(isinstance(choice, Choice) for choice in choices):
        return None
    attributes.setdefault("id", field.id)
    _validation_attributes(field, widget, attributes)
    html = [f"<select {_attributes({'name': field.name, **attributes})}>"]
    for choice in choices:
        value = str(choice.value) if isinstance(choice.value, bool) else choice.value
        option = {"value": value, **(choice.render_kw or {})}
        if choice.selected:
            option["selected"] = True
        label = escape(choice.label or choice.value)
        html.append(f"<option {_attributes(option)}>{label}</option>")
    html.append("</select>")
    return _html("".join(html))


class _Label(Label):
    """``Label``, with ``_attributes``."""

    def __call__(self, text: str | None = None, **attributes: Any) -> Markup:
        if "for_" in attributes:
            attributes["for"] = attributes.pop("for_")
        else:
            attributes.setdefault("for", self.field_id)
        rendered = _attributes(attributes)
        opening = f"<label {rendered}>" if rendered else "<label>"
        return _html(f"{opening}{escape(text or self.text)}</label>")


#: ``meta`` for a form whose page writes its token with ``csrf_token()`` (the same token the
#: form's own field would hold) and whose POST is checked by CSRFProtect before the view runs
#: (test_b7): the field only signed one more token per form, and a POST checked it twice.
NO_CSRF_FIELD: dict[str, Any] = {"csrf": False}


class Form(FlaskForm):
    """The base of the public forms: Flask-WTF's, with two costs of every page taken away.

    WTForms' messages are read once per process: Flask-WTF reads the catalogue file again for
    every request that builds a form (every field without a label asks for a translation).
    And inputs (date inputs too), single selects and labels render through ``_attributes``:
    the same markup as WTForms' widgets, which spend about 0.1 ms per field in
    ``Markup.format`` (the preference page has eight of them). Any other widget, or a widget
    subclass that renders differently, goes through WTForms as before.
    """

    class Meta(FlaskForm.Meta):
        def get_translations(self, form: Any) -> Any:
            if not current_app.config.get("WTF_I18N_ENABLED", True):
                return super().get_translations(form)
            return _WTFORMS_MESSAGES

        def bind_field(self, form: Any, unbound_field: Any, options: dict[str, Any]) -> Any:
            field = super().bind_field(form, unbound_field, options)
            if type(field.label) is Label:
                field.label = _Label(field.label.field_id, field.label.text)
            return field

        def render_field(self, field: Any, render_kw: dict[str, Any]) -> Any:
            attributes = dict(field.render_kw or {}, **render_kw)
            widget = type(field.widget)
            if isinstance(field.widget, Input) and widget.__call__ is Input.__call__:
                return _render_input(field, field.widget, attributes)
            if widget.__call__ is DateInput.__call__:  # shared by the other date/time inputs
                return _render_date(field, field.widget, attributes)
            if (
                widget.__call__ is Select.__call__
                and widget.render_option.__func__ is Select.render_option.__func__
                and not field.widget.multiple
                and not field.has_groups()
            ):
                rendered = _render_select(field, field.widget, attributes)
                if rendered is not None:
                    return rendered
            return super().render_field(field, render_kw)


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

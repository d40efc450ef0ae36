"""Language selection in one place, and the catalogue checks that keep emails whole.

Order: an explicit choice (``lang`` in the query string, remembered in the session), then the
language stored for the subscriber the request is about, then Accept-Language, then the
configured default. Emails never use this: they are rendered under the recipient's stored
language with ``force_locale``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from babel.messages.pofile import read_po
from flask import Flask, Response, current_app, g, has_request_context, request, session
from flask_babel import get_locale, get_translations

from .config import SUPPORTED_LOCALES


def validated(code: object) -> str | None:
    """``code`` if it is one of our languages, else None (never a path, never free text)."""
    if isinstance(code, str) and code.lower() in SUPPORTED_LOCALES:
        return code.lower()
    return None


def remember_subscriber_language(language: str | None) -> None:
    """Let a view say which subscriber the page is about, so their language wins over headers."""
    g.subscriber_language = validated(language)


def select_locale() -> str:
    """Flask-Babel's locale selector; see the module docstring for the order."""
    if not has_request_context():
        return default_locale()  # the worker and the CLI always force the recipient's language
    # Query string only: reading a form body here could raise again inside an error page (413).
    explicit = validated(request.args.get("lang"))
    if explicit:
        session["lang"] = explicit
        return explicit
    remembered = validated(session.get("lang"))
    if remembered:
        return remembered
    subscriber = g.get("subscriber_language")
    if subscriber:
        return subscriber
    # The answer now depends on a request header: caches must know (see add_vary_header).
    g.locale_from_header = True
    negotiated = request.accept_languages.best_match(SUPPORTED_LOCALES)
    return negotiated or default_locale()


def _translations() -> Any:
    """Flask-Babel's translations for the current locale, looked up once per locale and page.

    Flask-Babel's own template functions look them up again for every string (the context,
    the domain, the locale and its name: about 40 calls each, a tenth of a page's work). The
    locale object is part of the key, so force_locale() and refresh() are followed at once.
    """
    if not has_request_context():
        return get_translations()
    # g itself, not the proxy: every attribute read through the proxy looks the context up.
    page = g._get_current_object()  # type: ignore[attr-defined]
    # Flask-Babel keeps the request's locale (the selected one, or the one force_locale() set)
    # on g._flask_babel; read there, a string costs no get_locale() call once it is known.
    locale = getattr(getattr(page, "_flask_babel", None), "babel_locale", None) or get_locale()
    cached = getattr(page, "_page_translations", None)
    if cached is None or cached[0] is not locale:
        cached = page._page_translations = (locale, get_translations())
    return cached[1]


class _PageTranslations:
    """The catalogue of ``_translations()``, looked up when a string is translated."""

    def ugettext(self, string: str) -> str:
        return _translations().ugettext(string)  # type: ignore[no-any-return]

    def ungettext(self, singular: str, plural: str, num: int) -> str:
        return _translations().ungettext(singular, plural, num)  # type: ignore[no-any-return]

    def upgettext(self, context: str, string: str) -> str:
        return _translations().upgettext(context, string)  # type: ignore[no-any-return]

    def unpgettext(self, context: str, singular: str, plural: str, num: int) -> str:
        return _translations().unpgettext(  # type: ignore[no-any-return]
            context, singular, plural, num
        )


def install_template_gettext(app: Flask) -> None:
    """Give the templates gettext and friends through ``_translations`` (see there).

    Jinja's own newstyle functions reach the catalogue through two ``Context.call``s per
    string (``_`` looks ``gettext`` up again, which wraps the callable given here); the
    functions the emails use (``mail.templating``) do the same work directly: the result is
    marked safe when autoescaping is on and always formatted with the keyword arguments.
    """
    from .mail.templating import gettext_functions  # the mail package imports this module

    app.jinja_env.add_extension("jinja2.ext.i18n")
    app.jinja_env.newstyle_gettext = True  # type: ignore[attr-defined]
    app.jinja_env.globals.update(gettext_functions(_PageTranslations()))


def default_locale() -> str:
    return validated(current_app.config.get("BABEL_DEFAULT_LOCALE")) or "en"


def add_vary_header(response: Response) -> Response:
    """``Vary: Accept-Language`` on responses whose language came from that header."""
    if g.get("locale_from_header"):
        response.vary.add("Accept-Language")
    return response


#: Each language named in itself, for the switcher.
NATIVE_NAMES = {"nl": "Nederlands", "fr": "Français", "en": "English"}


def template_context() -> dict[str, object]:
    """Values every page needs to show the language switcher."""
    current = str(get_locale() or default_locale())

    def switch_url(code: str) -> str:
        args = request.args.to_dict(flat=True)
        args["lang"] = code
        return f"{request.path}?{urlencode(args)}"

    return {
        "current_language": current,
        "languages": [(code, NATIVE_NAMES[code]) for code in SUPPORTED_LOCALES],
        "switch_language_url": switch_url,
    }


def translations_dir(app: Flask) -> Path:
    return Path(app.config["BABEL_TRANSLATION_DIRECTORIES"])


@cache
def _catalogue_is_complete(translations: Path, language: str) -> bool:
    po = translations / language / "LC_MESSAGES" / "messages.po"
    mo = po.with_suffix(".mo")
    if not (po.exists() and mo.exists()):
        return False
    with po.open("rb") as handle:
        catalogue = read_po(handle)
    for message in catalogue:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(strings):
            return False
    return mo.stat().st_mtime >= po.stat().st_mtime


def email_language(language: str | None) -> str:
    """The language to render an email in: the recipient's, if its catalogue is complete.

    A half-translated email is worse than an English one (catalogue row E10), so a language
    whose catalogue is missing, stale, fuzzy or incomplete falls back to English.
    """
    language = validated(language) or default_locale()
    if language == "en":
        return language
    if _catalogue_is_complete(translations_dir(current_app), language):
        return language
    current_app.logger.error(
        "catalogue for %r is incomplete or not compiled; emailing in English", language
    )
    return "en"

"""Render the templates of one email in its language, looking up what they share only once.

``flask.render_template`` runs the app's context processors for every template, and the gettext
functions Flask-Babel installs in Jinja look the catalogue up again (app, domain, locale, cache)
for every translated string. An email is three templates with about ten strings, all in one
language, so the worker paid for the same lookups some thirty times per message. Here they are
made once per email; what the templates see, and so what they render, is the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import before_render_template, current_app, template_rendered
from flask_babel import force_locale, get_translations
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup


@contextmanager
def email_context(language: str, context: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The context for every template of one email, inside ``force_locale(language)``.

    It holds what ``render_template`` and ``Template.render`` would add (the Jinja globals and
    the app's context processors; the values given win over both, as there) and gettext
    functions bound to the language's catalogue.
    """
    with force_locale(language):
        # The environment's globals first, as Template.render merges them: everything given
        # or added below wins over them.
        values = dict(current_app.jinja_env.globals)
        values.update(gettext_functions(get_translations()))
        values.update(context)
        current_app.update_template_context(values)
        yield values


def render(name: str, context: dict[str, Any]) -> str:
    """``render_template(name, **context)`` for a context from :func:`email_context`.

    The same template lookup, signals and error handling as Flask's and Jinja's, without
    running the context processors again, and without merging the environment's globals into
    a new dict for every template: the email's context already holds them.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    environment = app.jinja_env
    template = environment.get_or_select_template(name)
    before_render_template.send(
        app, _async_wrapper=app.ensure_sync, template=template, context=context
    )
    try:
        rendered = environment.concat(  # type: ignore[attr-defined]
            template.root_render_func(template.new_context(context, shared=True))
        )
    except Exception:
        environment.handle_exception()
    template_rendered.send(app, _async_wrapper=app.ensure_sync, template=template, context=context)
    return rendered


def gettext_functions(translations: Any) -> dict[str, Any]:
    """Jinja's "newstyle" gettext functions (``jinja2.ext``), bound to one catalogue (any
    object with ``ugettext``, ``ungettext``, ``upgettext`` and ``unpgettext``).

    As in Jinja, the result is marked safe when autoescaping is on and is always formatted with
    the keyword arguments, so ``%`` in a translation must be written ``%%``. ``_`` is bound
    directly rather than through Jinja's alias, which looks ``gettext`` up again on each call.
    """

    @pass_context
    def gettext(context: Context, string: str, /, **variables: Any) -> str:
        result = translations.ugettext(string)
        return _format(context, result, variables)

    @pass_context
    def ngettext(
        context: Context, singular: str, plural: str, num: int, /, **variables: Any
    ) -> str:
        variables.setdefault("num", num)
        return _format(context, translations.ungettext(singular, plural, num), variables)

    @pass_context
    def pgettext(context: Context, string_context: str, string: str, /, **variables: Any) -> str:
        variables.setdefault("context", string_context)
        return _format(context, translations.upgettext(string_context, string), variables)

    @pass_context
    def npgettext(
        context: Context,
        string_context: str,
        singular: str,
        plural: str,
        num: int,
        /,
        **variables: Any,
    ) -> str:
        variables.setdefault("context", string_context)
        variables.setdefault("num", num)
        result = translations.unpgettext(string_context, singular, plural, num)
        return _format(context, result, variables)

    return {
        "_": gettext,
        "gettext": gettext,
        "ngettext": ngettext,
        "pgettext": pgettext,
        "npgettext": npgettext,
    }


def _format(context: Context, result: str, variables: dict[str, Any]) -> str:
    if context.eval_ctx.autoescape:
        # As Jinja does: the catalogue is trusted markup, the variables are escaped by "%".
        result = Markup(result)  # noqa: S704
    return result % variables  # type: ignore[no-any-return]

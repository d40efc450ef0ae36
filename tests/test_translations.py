"""Every string ships in nl, fr and en: a catalogue with a gap or a fuzzy entry fails here."""

from __future__ import annotations

import pytest
from babel.messages.pofile import read_po

from preference_center.config import PROJECT_ROOT, TRANSLATIONS_DIR


def catalogue(language):
    with (TRANSLATIONS_DIR / language / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle, locale=language)


@pytest.mark.parametrize("language", ["nl", "fr"])
def test_every_entry_is_translated_and_none_is_fuzzy(language):
    problems = []
    for message in catalogue(language):
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy:
            problems.append(f"fuzzy: {message.id!r}")
        if not all(s.strip() for s in strings):
            problems.append(f"untranslated: {message.id!r}")
    assert problems == []


@pytest.mark.parametrize("language", ["nl", "fr"])
def test_placeholders_match_the_english_source(language):
    cat = catalogue(language)
    errors = [(message.id, [str(e) for e in errs]) for message, errs in cat.check() if errs]
    assert errors == []


@pytest.mark.parametrize("language", ["nl", "fr"])
def test_the_catalogue_covers_every_string_in_the_code(language, tmp_path):
    """A string added to the code but never extracted would show in English on nl/fr pages."""
    from click.testing import CliRunner

    from preference_center import translations

    pot = PROJECT_ROOT / "translations" / "messages.pot"
    result = CliRunner().invoke(translations.cli, ["extract"])
    assert result.exit_code == 0, result.output
    with pot.open("rb") as handle:
        extracted = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(handle) if m.id}
    translated = {m.id if isinstance(m.id, str) else m.id[0] for m in catalogue(language) if m.id}
    assert extracted - translated == set(), "run `flask translations update` and translate"


def test_dutch_uses_u_and_french_uses_vous():
    """The house style for Belgium: formal address in both languages."""
    informal_nl = (" je ", " jij ", " jouw ", " jullie ")
    informal_fr = (" tu ", " ton ", " ta ", " tes ", " toi ")
    for language, words in (("nl", informal_nl), ("fr", informal_fr)):
        for message in catalogue(language):
            text = f" {message.string} ".lower() if isinstance(message.string, str) else ""
            assert not any(w in text for w in words), (language, message.id, message.string)


def test_templates_follow_force_locale_within_a_request():
    """Templates look their translations up once per locale and page (i18n._translations):
    a switch of locale in the middle of a page is still followed, both ways."""
    from flask_babel import force_locale

    from preference_center import create_app

    app = create_app({"TESTING": True, "SECRET_KEY": "t", "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    with app.test_request_context("/", headers={"Accept-Language": "nl"}):
        template = app.jinja_env.from_string('{{ _("Save") }}')
        assert template.render() == "Opslaan"
        with force_locale("fr"):
            assert template.render() == "Enregistrer"
        assert template.render() == "Opslaan"

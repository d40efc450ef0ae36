"""Consent texts: what a person agreed to, versioned per language and never edited.

A ledger entry points at the exact version shown, with its hash; publishing a new version adds
a row and leaves every earlier record pointing at what was really displayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import bindparam, func, select

from ..config import SUPPORTED_LOCALES
from ..extensions import db
from ..models import ConsentText

SIGNUP = "signup"

#: The statement shown next to the signup button, in each language. ``{site}`` is the
#: organisation's name (SITE_NAME) at the moment the text is published.
DEFAULT_TEXTS = {
    "nl": (
        "Ja, ik wil de e-mails ontvangen die ik hierboven heb aangevinkt. {site} gebruikt mijn "
        "e-mailadres, voornaam, taal en keuzes alleen daarvoor, bewaart ze tot ik mij afmeld en "
        "deelt ze enkel met de dienst die de e-mails verstuurt. Ik kan mijn keuzes op elk moment "
        "wijzigen of mij afmelden via de link in elke e-mail."
    ),
    "fr": (
        "Oui, je souhaite recevoir les e-mails que j’ai cochés ci-dessus. {site} utilise mon "
        "adresse e-mail, mon prénom, ma langue et mes choix uniquement à cette fin, les conserve "
        "jusqu’à ma désinscription et ne les partage qu’avec le service qui envoie les e-mails. "
        "Je peux modifier mes choix ou me désinscrire à tout moment via le lien présent dans "
        "chaque e-mail."
    ),
    "en": (
        "Yes, I want to receive the emails I ticked above. {site} uses my email address, first "
        "name, language and choices for this purpose only, keeps them until I unsubscribe and "
        "shares them only with the service that sends the emails. I can change my choices or "
        "unsubscribe at any time through the link in every email."
    ),
}


class ConsentTextMissing(RuntimeError):
    """No consent text is published for a language: the signup form cannot be shown."""


@dataclass(frozen=True, slots=True)
class TextShown:
    """The latest text as a page shows it, read with Core: the signup and preference pages
    show one on every view, and an ORM object costs more to load than the page uses."""

    id: int
    version: int
    body: str
    published_at: datetime


_TEXT = ConsentText.__table__
#: Built once: every signup and preference page runs it.
_LATEST = (
    select(*(_TEXT.c[name] for name in TextShown.__slots__))
    .where(_TEXT.c.kind == bindparam("kind"), _TEXT.c.language == bindparam("language"))
    .order_by(_TEXT.c.version.desc())
    .limit(1)
)


def _missing(language: str, kind: str) -> ConsentTextMissing:
    return ConsentTextMissing(
        f"no {kind} consent text in {language!r}: run `flask consent-texts seed`"
    )


def current(language: str, kind: str = SIGNUP) -> ConsentText:
    """The latest published text for ``language``."""
    text = db.session.scalar(
        select(ConsentText)
        .where(ConsentText.kind == kind, ConsentText.language == language)
        .order_by(ConsentText.version.desc())
        .limit(1)
    )
    if text is None:
        raise _missing(language, kind)
    return text


def shown(language: str, kind: str = SIGNUP) -> TextShown:
    """What a page shows of the latest published text for ``language`` (as ``current``)."""
    row = db.session.connection().execute(_LATEST, {"kind": kind, "language": language}).first()
    if row is None:
        raise _missing(language, kind)
    return TextShown(*row)


def publish(language: str, body: str, kind: str = SIGNUP) -> ConsentText:
    """Publish a new version of the text for ``language`` (the old ones stay as they were)."""
    body = body.strip()
    if language not in SUPPORTED_LOCALES:
        raise ValueError(f"language must be one of {', '.join(SUPPORTED_LOCALES)}")
    if not body:
        raise ValueError("a consent text cannot be empty")
    latest = db.session.scalar(
        select(func.max(ConsentText.version)).where(
            ConsentText.kind == kind, ConsentText.language == language
        )
    )
    text = ConsentText(
        kind=kind,
        language=language,
        version=(latest or 0) + 1,
        body=body,
        sha256=ConsentText.hash_body(body),
    )
    db.session.add(text)
    db.session.commit()
    return text


def seed_defaults() -> list[ConsentText]:
    """Publish the built-in texts for every language that has none yet."""
    site = current_app.config["SITE_NAME"]
    published = []
    for language, template in DEFAULT_TEXTS.items():
        try:
            current(language)
        except ConsentTextMissing:
            published.append(publish(language, template.format(site=site)))
    return published


def history(language: str, kind: str = SIGNUP) -> list[ConsentText]:
    return list(
        db.session.scalars(
            select(ConsentText)
            .where(ConsentText.kind == kind, ConsentText.language == language)
            .order_by(ConsentText.version)
        )
    )

"""Topics: what people can subscribe to, managed by the ``flask topics`` commands."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.exc import IntegrityError

from ..config import SUPPORTED_LOCALES
from ..extensions import db
from ..models import Subscription, Topic

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
TEXT_FIELDS = tuple(
    f"{kind}_{lang}" for kind in ("name", "description") for lang in SUPPORTED_LOCALES
)


@dataclass(frozen=True, slots=True)
class TopicLabel:
    """A topic as the subscribers' pages show it, read with Core rather than as an ORM object
    (which costs about twice as much to load); names and descriptions follow Topic's rules."""

    id: int
    slug: str
    position: int
    is_public: bool
    frequencies: list[str]
    name_nl: str
    name_fr: str
    name_en: str
    description_nl: str
    description_fr: str
    description_en: str

    name = Topic.name
    description = Topic.description


def select_labels() -> Select[Any]:
    """A SELECT of the columns of TopicLabel, in its order (``TopicLabel(*row)``)."""
    table = Topic.__table__
    return select(*(table.c[name] for name in TopicLabel.__slots__))


_TOPIC = Topic.__table__
#: Built once: every signup page and every signup runs one of them.
_PUBLIC_LABELS = (
    select_labels().where(_TOPIC.c.is_public.is_(True)).order_by(_TOPIC.c.position, _TOPIC.c.id)
)
_PUBLIC_LABELS_BY_SLUG = _PUBLIC_LABELS.where(_TOPIC.c.slug.in_(bindparam("slugs", expanding=True)))


class TopicError(ValueError):
    """A topic change was refused; the message says why."""


#: Three example topics loaded by ``make run`` on an empty database.
EXAMPLES: list[dict[str, Any]] = [
    {
        "slug": "newsletter",
        "name_nl": "Maandelijkse nieuwsbrief",
        "name_fr": "Newsletter mensuelle",
        "name_en": "Monthly newsletter",
        "description_nl": "Eén keer per maand ons nieuws, tips en verhalen van klanten.",
        "description_fr": "Une fois par mois, nos actualités, des conseils et des témoignages de clients.",
        "description_en": "Once a month: our news, tips and stories from customers.",
        "purpose": "Sending the monthly newsletter to people who asked for it.",
        "position": 1,
    },
    {
        "slug": "events",
        "name_nl": "Evenementen en webinars",
        "name_fr": "Événements et webinaires",
        "name_en": "Events and webinars",
        "description_nl": "Uitnodigingen voor onze evenementen, beurzen en webinars in België en Nederland.",
        "description_fr": "Des invitations à nos événements, salons et webinaires en Belgique et aux Pays-Bas.",
        "description_en": "Invitations to our events, trade fairs and webinars in Belgium and the Netherlands.",
        "purpose": "Inviting people to events they said they want to hear about.",
        "position": 2,
        "frequencies": ["every-issue", "monthly"],
    },
    {
        "slug": "product-news",
        "name_nl": "Productnieuws",
        "name_fr": "Nouveautés produits",
        "name_en": "Product news",
        "description_nl": "Een korte melding wanneer we een nieuw product of een belangrijke verbetering lanceren.",
        "description_fr": "Un court message lorsque nous lançons un nouveau produit ou une amélioration importante.",
        "description_en": "A short note when we launch a new product or an important improvement.",
        "purpose": "Announcing new products and major changes to people who asked for it.",
        "position": 3,
    },
]


def public_labels() -> list[TopicLabel]:
    """The topics shown on public forms, in their display order, read with Core."""
    rows = db.session.connection().execute(_PUBLIC_LABELS)
    return [TopicLabel(*row) for row in rows]


def public_labels_by_slug(slugs: list[str]) -> list[TopicLabel]:
    """The public topics named by ``slugs``, in their display order (unknown ones left out)."""
    rows = db.session.connection().execute(_PUBLIC_LABELS_BY_SLUG, {"slugs": slugs})
    return [TopicLabel(*row) for row in rows]


def all_topics() -> list[Topic]:
    return list(db.session.scalars(select(Topic).order_by(Topic.position, Topic.id)))


def get(slug: str) -> Topic:
    topic = db.session.scalar(select(Topic).where(Topic.slug == slug))
    if topic is None:
        raise TopicError(f"no topic with slug {slug!r}")
    return topic


def add(slug: str, **fields: Any) -> Topic:
    """Create a topic; names in every language are required, so no page shows a gap."""
    if not SLUG.match(slug or ""):
        raise TopicError("a slug is lowercase letters, digits and dashes, e.g. 'product-news'")
    missing = [
        f"name_{lang}"
        for lang in SUPPORTED_LOCALES
        if not (fields.get(f"name_{lang}") or "").strip()
    ]
    if missing:
        raise TopicError(f"missing {', '.join(missing)}: every topic is named in nl, fr and en")
    topic = Topic(slug=slug, **_clean(fields))
    db.session.add(topic)
    try:
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise TopicError(f"a topic with slug {slug!r} exists already") from exc
    return topic


def update(slug: str, **fields: Any) -> Topic:
    """Change a topic's texts, purpose, visibility or position; ``None`` leaves a field alone."""
    topic = get(slug)
    for key, value in _clean(fields).items():
        if value is None:
            continue
        if key.startswith("name_") and not str(value).strip():
            raise TopicError(f"{key} cannot be empty")
        setattr(topic, key, value)
    db.session.commit()
    return topic


def remove(slug: str) -> None:
    """Delete a topic nobody was ever subscribed to; otherwise hide it (history must stay)."""
    topic = get(slug)
    used = db.session.scalar(
        select(Subscription.id).where(Subscription.topic_id == topic.id).limit(1)
    )
    if used is not None:
        raise TopicError(
            f"{slug!r} has subscription history and cannot be deleted; hide it with "
            "`flask topics update {slug} --private`"
        )
    db.session.delete(topic)
    db.session.commit()


def seed_examples() -> list[Topic]:
    """Load the example topics into an empty database; do nothing if any topic exists."""
    if db.session.scalar(select(Topic.id).limit(1)) is not None:
        return []
    topics = [Topic(**example) for example in EXAMPLES]
    db.session.add_all(topics)
    db.session.commit()
    return topics


def as_dict(topic: Topic) -> dict[str, Any]:
    data = {
        "slug": topic.slug,
        "public": topic.is_public,
        "position": topic.position,
        "purpose": topic.purpose,
        "frequencies": topic.frequencies or [],
    }
    data.update({name: getattr(topic, name) for name in TEXT_FIELDS})
    return data


#: Frequencies a topic may offer (the preference page has words for each).
FREQUENCIES = ("every-issue", "weekly", "monthly")


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    allowed = {*TEXT_FIELDS, "purpose", "is_public", "position", "frequencies"}
    for frequency in fields.get("frequencies") or []:
        if frequency not in FREQUENCIES:
            raise TopicError(f"frequency {frequency!r}: use {', '.join(FREQUENCIES)}")
    unknown = set(fields) - allowed
    if unknown:
        raise TopicError(f"unknown fields: {', '.join(sorted(unknown))}")
    return {k: (v.strip() if isinstance(v, str) else v) for k, v in fields.items()}

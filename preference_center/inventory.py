"""The data inventory: every personal field we store, why, where from, and until when.

Declared once here. The "what we hold about you" page reads it with the person's values, and
the DPO's register of processing (Art. 30) is built from the same list, so the two can never
disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import lazy_gettext as _l


@dataclass(frozen=True)
class Field:
    key: str  # attribute of Contact, or a pseudo-field shown by the page
    label: object
    purpose: object
    retention: object


RETENTION_SUBSCRIBED = _l(
    "Until you unsubscribe from everything or ask us to forget you, whichever comes first."
)

FIELDS: tuple[Field, ...] = (
    Field(
        "email",
        _l("Email address"),
        _l("To send you the emails you asked for, and to recognise you when you come back."),
        RETENTION_SUBSCRIBED,
    ),
    Field(
        "first_name",
        _l("First name"),
        _l("To greet you by name in our emails."),
        RETENTION_SUBSCRIBED,
    ),
    Field(
        "last_name",
        _l("Last name"),
        _l("To know who you are when you were added from an event list."),
        RETENTION_SUBSCRIBED,
    ),
    Field(
        "company",
        _l("Company"),
        _l("To know who you are when you were added from an event list."),
        RETENTION_SUBSCRIBED,
    ),
    Field(
        "language",
        _l("Language"),
        _l("To write to you in your language."),
        RETENTION_SUBSCRIBED,
    ),
    Field(
        "subscriptions",
        _l("Your choices"),
        _l("To send you only the topics you chose, as often as you chose."),
        RETENTION_SUBSCRIBED,
    ),
    Field(
        "paused_until",
        _l("Pause"),
        _l("To send you nothing until the date you chose."),
        RETENTION_SUBSCRIBED,
    ),
    Field(
        "consent_history",
        _l("Consent history"),
        _l(
            "To prove when and how you gave or withdrew your consent, as the law requires "
            "(GDPR article 7). It includes the time, the text you agreed to, and the IP "
            "address and browser you used."
        ),
        _l(
            "As long as you are subscribed. IP addresses are shortened and browser "
            "details removed after %(months)s months."
        ),
    ),
)


def register() -> list[dict[str, str]]:
    """The inventory as plain rows, for the register of processing (Art. 30)."""
    return [
        {
            "field": f.key,
            "label": str(f.label),
            "purpose": str(f.purpose),
            "retention": str(f.retention),
        }
        for f in FIELDS
    ]

"""Email address rules: one function decides what is valid, canonical and sendable.

Used by the signup form, the imports and the CLI alike, so an address is judged the same way
whatever the door it came through.

Canonical rule (documented in the README): the address as normalised by email-validator
(Unicode NFC, fullwidth characters folded, domain lowercased and IDNA-checked), then the local
part lowercased too. RFC 5321 lets a server treat ``Jan`` and ``jan`` differently, but no
mailbox provider our users deal with does, and two rows for one person would be worse.
Provider-specific tricks (Gmail dots, ``+tags``) are *not* applied: they are different
addresses to every system but Gmail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, NamedTuple

from disposable_email_domains import blocklist as _disposable_domains
from email_validator import EmailNotValidError, EmailUndeliverableError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, DOT_ATOM_TEXT

from .models import AddressKind

#: RFC 5321 limits, counted in octets after encoding (local part UTF-8, domain IDNA ASCII).
MAX_LOCAL_OCTETS = 64
MAX_ADDRESS_OCTETS = 254

#: Impersonal mailboxes of an organisation (RFC 2142 plus Dutch and French office practice).
#: Tagged, never refused: Belgian law treats them apart (KB 4 April 2003), counsel decides.
ROLE_LOCAL_PARTS = frozenset(
    """
    abuse accounting accounts accountspayable admin admins administratie administration
    administrator administrators accueil aankoop achat achats alerts all billing boekhouding
    booking bookings bestellingen bureau careers commandes commercial communicatie
    communication compliance comptabilite comptabilité contact contactez-nous contactus
    customercare customerservice customerservices customersupport direction directie
    donotreply editor editorial enquiries enquiry events evenementen everyone facturatie
    facturation factuur factures feedback finance frontdesk general headoffice hello help
    helpdesk hiring hostmaster hq hr immo info infos inkoop inquiries inquiry investors
    invoices it jobs juridique juridisch klantendienst klantenservice legal mail mailer-daemon
    marketing media members membership news newsletter newsletters noc noreply notifications
    office onthaal operations ops orders partners partnerships payroll personeel
    postmaster pr presse press privacy procurement purchasing questions reception receptie
    recruiting recruitment recrutement reservations reservaties réservations rh root sales
    secretariaat secretariat secrétariat security service servicedesk shipping staff
    subscribe support sysadmin team tech techsupport unsubscribe vacatures vente ventes
    verkoop vragen webmaster welcome
    """.split()
)
#: The same names without separators, so no-reply, no_reply and no.reply all match.
_DROP_SEPARATORS: Final = str.maketrans("", "", "._-")
_ROLE_COMPACT = frozenset(name.translate(_DROP_SEPARATORS) for name in ROLE_LOCAL_PARTS)
_STEM_END: Final = re.compile(r"[._\-+]")

#: email-validator lowercases these local parts (RFC 2142); the fast path must do the same.
_CASE_INSENSITIVE: Final = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
#: The options every address is validated with: the one rule for every door (D1-D9).
_RULES: Final = {
    "allow_smtputf8": False,
    "allow_display_name": False,
    "allow_quoted_local": False,
    "allow_domain_literal": False,
    "strict": True,
}


class InvalidAddress(ValueError):
    """The address cannot be used; ``reason`` is a stable code the views translate."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Address:
    canonical: str  # lookups and uniqueness
    display: str  # what the person typed, normalised, Unicode domain kept
    ascii: str  # what SMTP gets: canonical with the domain in IDNA 2008 ASCII form
    kind: AddressKind

    @property
    def masked(self) -> str:
        """``j***@example.be``: enough for a person to recognise, useless in a log."""
        local, _, domain = self.display.partition("@")
        return f"{local[:1]}***@{domain}"


def parse(raw: str, *, check_deliverability: bool = False) -> Address:
    """Validate and normalise ``raw``, or raise :class:`InvalidAddress`.

    DNS checks are off unless the caller asks (setting ``EMAIL_CHECK_DELIVERABILITY``):
    a signup must not wait on a resolver, and tests never touch the network.
    """
    if not isinstance(raw, str):
        raise InvalidAddress("syntax")
    # Checked before stripping: a line break at either end is refused, never trimmed (D8).
    if "\r" in raw or "\n" in raw or "\0" in raw:
        raise InvalidAddress("syntax", "line break")
    text = raw.strip()
    if not text:
        raise InvalidAddress("empty")
    if len(text) > 4 * MAX_ADDRESS_OCTETS:
        raise InvalidAddress("too_long")
    local = text.rpartition("@")[0]
    if local and not local.isascii():
        # No SMTPUTF8 path exists here, and Flask-Mail crashes on such addresses (D6).
        raise InvalidAddress("non_ascii_local")
    if not check_deliverability:
        address = _fast_parse(text)
        if address is not None:
            return address
    try:
        result = validate_email(text, check_deliverability=check_deliverability, **_RULES)
    except EmailUndeliverableError as exc:
        raise InvalidAddress("undeliverable", str(exc)) from exc
    except EmailNotValidError as exc:
        message = str(exc).lower()
        if "too long" in message:
            reason = "local_too_long" if "before the @-sign" in message else "too_long"
        elif "after the @-sign" in message or "domain" in message:
            reason = "domain"
        else:
            reason = "syntax"
        raise InvalidAddress(reason, str(exc)) from exc
    local_part, _, domain = result.normalized.partition("@")
    return _address(local_part, domain, result.ascii_domain.lower())


def _address(local_part: str, domain: str, ascii_domain: str) -> Address:
    """The checks and forms that follow email-validator's verdict, shared by both paths."""
    local_octets = len(local_part.encode("utf-8"))
    if local_octets > MAX_LOCAL_OCTETS:
        raise InvalidAddress("local_too_long")
    if local_octets + 1 + len(ascii_domain) > MAX_ADDRESS_OCTETS:
        raise InvalidAddress("too_long")
    lower = local_part.lower()
    return Address(
        canonical=f"{lower}@{domain.lower()}",
        display=f"{local_part}@{domain}",
        ascii=f"{lower}@{ascii_domain}",
        kind=_kind(lower, ascii_domain, domain.lower()),
    )


def _fast_parse(text: str) -> Address | None:
    """The common address without email-validator's per-character work, or None.

    An import checks 100,000 addresses at a handful of domains; email-validator spends most
    of its time on the domain (IDNA, Unicode categories), the same for every row. This path
    takes only a plain dot-atom ASCII local part that email-validator itself would accept
    unchanged (its first, fastest rule), and asks email-validator about the domain once per
    domain (:func:`_domain`). Anything else, and every address that would fail any check,
    goes the full way, so the verdict, the normalised forms and the error reasons are exactly
    email-validator's (tests/test_address_fast_path.py compares both paths over the corpora).
    """
    local, _, domain_part = text.partition("@")
    if len(local) > MAX_LOCAL_OCTETS or not DOT_ATOM_TEXT.match(local):
        return None
    domain = _domain(domain_part)
    # email-validator's length checks (the address as given, normalised and in ASCII form)
    # and ours; the local part is ASCII, so its characters are octets. Anything over goes
    # the full way, for the exact message.
    if domain is None or len(local) + 1 + domain.octets > MAX_ADDRESS_OCTETS:
        return None
    lower = local.lower()
    if lower in _CASE_INSENSITIVE:
        local = lower  # email-validator's RFC 2142 rule: INFO@ becomes info@
    return Address(
        canonical=f"{lower}@{domain.lower}",
        display=f"{local}@{domain.unicode}",
        ascii=f"{lower}@{domain.ascii}",
        kind=AddressKind.DISPOSABLE if domain.disposable else _role_or_personal(lower),
    )


class _Domain(NamedTuple):
    unicode: str  # as email-validator normalises it, for display
    lower: str  # the same, lowercased, for the canonical form
    ascii: str  # IDNA 2008 ASCII form, lowercased, for SMTP
    octets: int  # UTF-8 length of the longest of: as typed, normalised, ASCII
    disposable: bool


@lru_cache(maxsize=4096)
def _domain(domain_part: str) -> _Domain | None:
    """What email-validator makes of a domain, and its kind; None if it refuses it.

    Asked with a one-letter local part, which email-validator always accepts: the domain is
    validated on its own in email-validator (``validate_email_domain_name``), so its answer
    holds for any local part. Bounded, so a file of random domains cannot grow it.
    """
    try:
        result = validate_email("a@" + domain_part, check_deliverability=False, **_RULES)
    except EmailNotValidError:
        return None
    ascii_domain, lower = result.ascii_domain.lower(), result.domain.lower()
    octets = max(len(domain_part.encode("utf-8")), len(result.domain.encode("utf-8")),
                 len(ascii_domain))  # fmt: skip
    return _Domain(result.domain, lower, ascii_domain, octets,
                   _disposable_domain(ascii_domain, lower))  # fmt: skip


def _kind(local: str, ascii_domain: str, domain: str) -> AddressKind:
    if _disposable_domain(ascii_domain, domain):
        return AddressKind.DISPOSABLE
    return _role_or_personal(local)


def _role_or_personal(local: str) -> AddressKind:
    compact = local.split("+")[0].translate(_DROP_SEPARATORS)
    # "info.be@", "sales-nl@", "verkoop_gent@", "sales1@" are role mailboxes too.
    stem = _STEM_END.split(local, maxsplit=1)[0].rstrip("0123456789")
    if compact in _ROLE_COMPACT or compact.rstrip("0123456789") in _ROLE_COMPACT:
        return AddressKind.ROLE
    if stem in ROLE_LOCAL_PARTS:
        return AddressKind.ROLE
    return AddressKind.PERSONAL


@lru_cache(maxsize=4096)
def _disposable_domain(ascii_domain: str, domain: str) -> bool:
    # Per domain, like _domain: an import asks about the same few domains on every row.
    return _is_disposable(ascii_domain) or _is_disposable(domain)


def _is_disposable(domain: str) -> bool:
    """The domain or any parent of it is a throwaway-mail domain (x.mailinator.com too)."""
    labels = domain.split(".")
    return any(".".join(labels[i:]) in _disposable_domains for i in range(len(labels) - 1))


def mask(address: str) -> str:
    """Mask an address for logs and pages without parsing it (catalogue A13)."""
    local, at, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if at else "***"

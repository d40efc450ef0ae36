"""Which row is the header and which column holds which field: :func:`guess_mapping`,
and the :class:`~preference_center.readers.FileInfo` of a table (delimited text or xlsx)."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Final

from .common import FIELDS, HEADER_SCAN_ROWS, SAMPLE_ROWS, FileInfo, Format

# --- Column names ------------------------------------------------------------------------

# Header names of common exports (Outlook, Gmail/Google Contacts, Thunderbird, Yahoo, WAB,
# KAddressBook, LinkedIn, Eventbrite, Mailchimp, HubSpot, badge scanners) and of Dutch and
# French spreadsheets, compared after _header_key(): case, accents, spaces and punctuation
# removed, so "E-mail Address", "e-mail adres" and "EMAIL_ADDRESS " all become one key.
# Earlier entries win when a file has several matching columns.
_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "email": (
        "email",
        "emailaddress",
        "emailadres",
        "emailadresse",
        "adresseemail",
        "adressemail",
        "adresseelectronique",
        "adressecourriel",
        "courriel",
        "mail",
        "mailadres",
        "mailaddress",
        "emailaddr",
        "email1value",  # Google Contacts
        "email1",
        "email1address",
        "primaryemail",  # Thunderbird
        "emailprimary",
        "workemail",
        "businessemail",
        "emailwork",
    ),
    "first_name": (
        "firstname",
        "first",  # Yahoo
        "givenname",  # Google legacy, KAddressBook
        "voornaam",
        "prenom",
        "fname",  # badge scanners, Mailchimp merge tag
        "forename",
        "roepnaam",
        "voornamen",
        "prenoms",
        "given",
    ),
    "last_name": (
        "lastname",
        "last",  # Yahoo
        "surname",
        "familyname",  # Google legacy, KAddressBook
        "achternaam",
        "familienaam",
        "nom",
        "nomdefamille",
        "lname",
        "family",
    ),
    "company": (
        "company",
        "companyname",
        "organization",
        "organisation",
        "organizationname",  # Google Contacts
        "organisationname",
        "organization1name",  # Google legacy
        "bedrijf",
        "bedrijfsnaam",
        "organisatie",
        "firma",
        "societe",
        "entreprise",
        "nomdelentreprise",
        "raisonsociale",
        "employer",
        "werkgever",
        "companyororganization",  # EZ Badge
        "org",
        "associatedcompany",  # HubSpot
        "section1company",  # Gmail 2007
    ),
    "language": (
        "language",
        "lang",
        "taal",
        "langue",
        "preferredlanguage",
        "voorkeurstaal",
        "taalvoorkeur",
        "correspondentietaal",
        "languepreferee",
        "languedecorrespondance",
        "locale",
    ),
    "full_name": (
        "name",
        "fullname",
        "displayname",  # Thunderbird
        "formattedname",  # KAddressBook
        "naam",
        "volledigenaam",
        "nomcomplet",
        "nometprenom",
        "contactname",
        "contact",
    ),
}

# Headers that mention mail but do not hold the address ("E-mail Type", "E-mail Display
# Name", Substack's "email_disabled", KAddressBook's "Mail Client"...).
_NOT_ADDRESS_WORDS: Final = frozenset(
    "type label display name disabled status format optin opt consent date time sent "
    "verified bounce bounced domain campaign client subscribed unsubscribed count opened "
    "clicked marketing permission preference preferences frequency".split()
)
_SECONDARY_WORDS: Final = frozenset("2 3 4 5 secondary alternate other second additional".split())

_ADDRESS_LIKE: Final = re.compile(r"\S@\S")


def guess_mapping(
    headers: Sequence[str], sample_rows: Iterable[Sequence[str]] = ()
) -> dict[str, int | None]:
    """Guess which column holds each of :data:`FIELDS`, for the UI to show and change.

    Header names are compared without case, accents, spaces or punctuation against the
    names used by common exports in English, Dutch and French. When no header names the
    address, the column whose sample values mostly contain "@" is taken: files without a
    header row, or with a header in another language, still import.
    """
    keys = [_header_key(h) for h in headers]
    rows = list(sample_rows)
    # The address first: it is the one column an import cannot do without, so a column of
    # addresses headed "Contact" is the email, not a name.
    email = _column_by_alias(_ALIASES["email"], keys, set())
    if email is None:
        email = _column_by_mail_word(headers, set())
    if email is None:
        email = _column_of_addresses(rows, set())
    mapping: dict[str, int | None] = {"email": email}
    used: set[int] = set() if email is None else {email}
    for name in FIELDS[1:]:
        index = _column_by_alias(_ALIASES[name], keys, used)
        mapping[name] = index
        if index is not None:
            used.add(index)
    # Belgian Dutch forms say "Voornaam" + "Naam": there "Naam" is the family name.
    full = mapping["full_name"]
    if (
        mapping["last_name"] is None
        and mapping["first_name"] is not None
        and full is not None
        and keys[full] == "naam"
    ):
        mapping["last_name"], mapping["full_name"] = full, None
    return mapping


# --- Header and mapping ------------------------------------------------------------------


def _tabular_info(
    filename: str,
    fmt: Format,
    table: list[tuple[int, list[str]]],
    codec: str | None,
    source: str | None,
    delimiter: str | None,
    sheet: str | None,
    sheets: tuple[str, ...],
    sep_line: bool,
) -> FileInfo:
    header_index = _find_header([cells for _, cells in table[:HEADER_SCAN_ROWS]])
    if header_index is None:
        header_line, headers, data = None, (), table
    else:
        header_line = table[header_index][0]
        headers = tuple(cell.strip() for cell in table[header_index][1])
        data = table[header_index + 1 :]
    sample = tuple(tuple(cell.strip() for cell in cells) for _, cells in data[:SAMPLE_ROWS])
    columns = max([len(headers), *(len(cells) for cells in sample)])
    return FileInfo(
        filename=filename,
        format=fmt,
        encoding=codec,
        encoding_source=source,
        delimiter=delimiter,
        sheet=sheet,
        sheets=sheets,
        header_line=header_line,
        headers=headers,
        mapping=guess_mapping(headers, sample),
        sample=sample,
        columns=columns,
        sep_line=sep_line,
    )


def _find_header(rows: Sequence[Sequence[str]]) -> int | None:
    """Index of the header row among the first non-blank rows, or None when there is none.

    The first row that names an email column is the header (this skips LinkedIn's "Notes:"
    preamble). Failing that, the row before the first row with an address in it; a file
    whose first row already holds an address has no header (Thunderbird, Palm). A file
    with no address at all in its first rows is assumed to start with its header.
    """
    for index, cells in enumerate(rows):
        has_address = any(_ADDRESS_LIKE.search(cell) for cell in cells)
        if not has_address and _email_header(cells):
            return index
        if has_address:
            return index - 1 if index > 0 else None
    return 0 if rows else None


def _email_header(cells: Sequence[str]) -> bool:
    keys = [_header_key(cell) for cell in cells]
    return (
        _column_by_alias(_ALIASES["email"], keys, set()) is not None
        or _column_by_mail_word(cells, set()) is not None
    )


def _header_key(header: str) -> str:
    decomposed = unicodedata.normalize("NFKD", header)
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return re.sub(r"[\W_]+", "", bare.casefold())


def _column_by_alias(aliases: Sequence[str], keys: Sequence[str], used: set[int]) -> int | None:
    for alias in aliases:
        for index, key in enumerate(keys):
            if key == alias and index not in used:
                return index
    return None


def _column_by_mail_word(headers: Sequence[str], used: set[int]) -> int | None:
    """A header like "Work e-mail" or "Courriel (pro)": short, says mail, nothing else.

    Headers that mention mail for another purpose ("E-mail Type", "email_disabled") are
    skipped, and secondary addresses ("E-mail 2", "Alternate Email") come last.
    """
    candidates: list[tuple[int, int]] = []
    for index, header in enumerate(headers):
        if index in used or len(header) > 40:
            continue
        decomposed = unicodedata.normalize("NFKD", header.casefold())
        bare = "".join(char for char in decomposed if not unicodedata.combining(char))
        words = re.findall(r"[a-z0-9]+", re.sub(r"\be[\s_-]?mail", "email", bare))
        if len(words) > 5 or not words:
            continue
        if not ({"email", "courriel"} & set(words) or "mail" in words):
            continue
        if _NOT_ADDRESS_WORDS & set(words):
            continue
        candidates.append((1 if _SECONDARY_WORDS & set(words) else 0, index))
    return min(candidates)[1] if candidates else None


def _column_of_addresses(rows: Iterable[Sequence[str]], used: set[int]) -> int | None:
    """The column where most non-empty sample values contain "@" (leftmost on a tie)."""
    filled: Counter[int] = Counter()
    addresses: Counter[int] = Counter()
    for cells in rows:
        for index, cell in enumerate(cells):
            if index in used or not cell.strip():
                continue
            filled[index] += 1
            if _ADDRESS_LIKE.search(cell):
                addresses[index] += 1
    best: tuple[float, int] | None = None
    for index, count in addresses.items():
        ratio = count / filled[index]
        if ratio > 0.5 and (best is None or (ratio, -index) > (best[0], -best[1])):
            best = (ratio, index)
    return best[1] if best else None

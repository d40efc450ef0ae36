"""The fast path of ``addresses.parse`` gives exactly the answers of full validation (D1-D9).

An import validates every address of a file, and ``addresses._fast_parse`` skips
email-validator's per-character work for the common address, asking it about each domain only
once. That is only allowed if nothing changes: the same addresses accepted, the same canonical,
display and ASCII forms and kind, the same refusals with the same reasons and messages. Every
address of the shared corpora (email-validator's and isemail's test cases, validator.js cases,
role names, disposable domains, the real contact exports and vCards), the generated benchmark
file's kinds of addresses and hand-written edge cases go through both paths, each in three
spellings (as given, upper case, title case).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import shared_testdata
from test_addresses import domain_of_length, email_validator_cases, isemail_cases

from preference_center import addresses, readers
from preference_center.addresses import Address, InvalidAddress

Verdict = tuple[str, Address | str]

EDGE_CASES = [
    "jan@example.be",
    "Jan.Peeters@EXAMPLE.BE",
    "INFO@example.be",
    "Postmaster@Example.be",
    "sales1@example.be",
    "no-reply@example.be",
    "x@sub.mailinator.com",
    "x@MAILINATOR.COM",
    "jan@ｅxample.be",  # fullwidth letter in the domain (D4)
    "jan@example。be",  # ideographic full stop
    "info@bücher.be",
    "info@BÜCHER.be",
    "info@faß.de",
    "info@xn--bcher-kva.be",
    "info@xn--bcher-kva.be.",
    "info@xn--zz.be",
    "a@b.c",
    "a@b.c1",
    "a@localhost",
    "a@example.local",
    "a@example.test",
    "a@@example.be",
    "a@example..be",
    "a@.example.be",
    "a@example.be.",
    "a@-example.be",
    "a@example-.be",
    "a@ab--cd.be",
    "a@[127.0.0.1]",
    "a@[IPv6:::1]",
    ".a@example.be",
    "a.@example.be",
    "a..b@example.be",
    "a b@example.be",
    '"a"@example.be',
    "Jan <jan@example.be>",
    "jan@example.be <jan@example.be>",
    "jan@exa mple.be",
    "jan@example.be;marie@example.be",
    "jan@exam\u200bple.be",
    "jan@exam\u00adple.be",
    "jan@exam\u0301ple.be",
    "jan@\u0301example.be",
    "jan@example.be\u00a0",
    "jan＠example.be",
    "jürgen@example.be",
    "jan@",
    "@example.be",
    "jan",
    "a!#$%&'*+-/=?^_`{|}~@example.be",
    "a" * 64 + "@example.be",
    "a" * 65 + "@example.be",
    "a" * 64 + "@" + domain_of_length(189),
    "a" * 64 + "@" + domain_of_length(190),
    "a" * 64 + "@" + domain_of_length(188, "xn--bcher-kva"),
    "a@" + domain_of_length(252),
    "a@" + domain_of_length(253),
    "a@" + domain_of_length(254),
    "a" * 60 + "@" + "ü" * 20 + "." + "d" * 150 + ".be",
    "a" * 60 + "@" + "ü" * 50 + "." + "d" * 120 + ".be",
    "a" * 64 + "@" + "ｅ" * 30 + "." + "d" * 60 + "." + "d" * 60 + ".be",  # too long as typed
    "a" * 64 + "@" + "ｅ" * 10 + "." + "d" * 60 + "." + "d" * 60 + ".be",
    "a@" + "d" * 63 + ".be",
    "a@" + "d" * 64 + ".be",
]


def both(raw: str) -> tuple[Verdict, Verdict]:
    """(fast path allowed, full validation only) verdicts on ``raw``."""
    return verdict(raw), verdict(raw, fast=False)


def verdict(raw: str, *, fast: bool = True) -> Verdict:
    original = addresses._fast_parse
    if not fast:
        addresses._fast_parse = lambda text: None  # type: ignore[assignment]
    try:
        return ("ok", addresses.parse(raw))
    except InvalidAddress as exc:
        return ("refused", f"{exc.reason}: {exc}")
    finally:
        addresses._fast_parse = original  # type: ignore[assignment]


def spellings(raw: str) -> Iterator[str]:
    yield raw
    yield raw.upper()
    yield raw.title()


def corpus_addresses() -> Iterator[str]:
    yield from EDGE_CASES
    for _, raw, _ in email_validator_cases():
        yield raw
    for _, raw, _ in isemail_cases():
        yield raw
    cases = json.loads(
        shared_testdata("email-validation", "validatorjs__isEmail_cases.json").read_text("utf-8")
    )["cases"]
    for case in cases:
        yield from (
            raw for raw in case.get("valid", []) + case.get("invalid", []) if isinstance(raw, str)
        )
    for name in (
        shared_testdata("role-accounts", "mixmax_role-based-email-addresses.txt")
        .read_text("utf-8")
        .split()
    ):
        yield f"{name}@example.be"
        yield f"{name}.gent@example.be"
    for line in shared_testdata("disposable-domains", "disposable_email_blocklist.conf").open(
        encoding="utf-8"
    ):
        if line.strip() and not line.startswith("#"):
            yield f"jan.peeters@{line.strip()}"
            yield f"info@sub.{line.strip()}"
    yield from file_addresses()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import bench_import
    finally:
        sys.path.pop(0)
    for index in range(0, 4000, 7):
        address = bench_import.person(index)[3]
        yield address
        yield bench_import.invalid_address(address, index % 4)


def file_addresses() -> Iterator[str]:
    """Every address cell of the real exports and vCards, as the import reads it."""
    for folder in ("contact-csv", "vcard"):
        for path in sorted(shared_testdata(folder).rglob("*")):
            if not path.is_file() or path.suffix.lower() not in (".csv", ".txt", ".vcf", ".tsv"):
                continue
            try:
                rows = list(readers.read_rows(path.read_bytes(), filename=path.name))
            except (readers.ReadError, ValueError):
                rows = []
            for row in rows:
                yield row.email
            # And every token holding an "@", as a badge scanner or a careless paste gives it.
            text = path.read_bytes().decode("utf-8", errors="replace")
            yield from re.findall(r"[^\s,;:<>\"'()\[\]]*@[^\s,;:<>\"'()\[\]]*", text)


def test_the_fast_path_is_taken_for_the_common_address():
    addresses._domain.cache_clear()
    addresses.parse("jan.peeters@example.be")
    addresses.parse("marie.dubois@example.be")
    assert addresses._domain.cache_info().hits >= 1


def test_the_fast_path_and_full_validation_agree_on_every_corpus_address():
    checked: set[str] = set()
    differences = []
    for raw in corpus_addresses():
        for spelling in spellings(raw):
            if spelling in checked:
                continue
            checked.add(spelling)
            fast, full = both(spelling)
            if fast != full:
                differences.append((spelling, fast, full))
    assert len(checked) > 20_000
    assert differences == []


@pytest.mark.parametrize("raw", EDGE_CASES)
def test_the_fast_path_gives_the_full_answer_for_each_edge_case(raw):
    fast, full = both(raw)
    assert fast == full

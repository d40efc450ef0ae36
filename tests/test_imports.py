"""Importing event contact lists (catalogue rows G1-G6, G8-G14, G16, G17, F4).

The web upload, the permission campaign and G7/G15 come with the marketers' pages.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import date, timedelta

import pytest
from conftest import shared_testdata
from sqlalchemy import func, select

from preference_center import readers, suppression
from preference_center.extensions import db
from preference_center.models import (
    AskedMarker,
    AuditEntry,
    Contact,
    ContactSource,
    ImportOutcome,
    ImportRow,
    Subscription,
    SuppressionReason,
)
from preference_center.services import import_chunks, imports

EVENT = imports.Provenance(
    "Horeca Expo Gent", date(2026, 11, 16), imports.CollectedBy.BADGE_SCAN, "anna@example.be"
)


def run(app, content: bytes, filename: str = "contacts.csv", **options):
    with app.app_context():
        batch = imports.import_contacts(
            io.BytesIO(content), filename=filename, provenance=EVENT, options=options
        )
        outcomes = {
            (r.line, r.email): (r.outcome, r.reason)
            for r in db.session.scalars(select(ImportRow).where(ImportRow.batch_id == batch.id))
        }
        return batch.counts, outcomes, batch.id


def contacts(app):
    with app.app_context():
        return {c.email: c for c in db.session.scalars(select(Contact))}


def test_g1_semicolon_and_comma_files_are_both_read(app):
    counts, _, _ = run(app, b"E-mailadres;Voornaam\njan@example.be;Jan\nmarie@example.be;Marie\n")
    assert counts == {"new": 2}
    counts, _, _ = run(app, b"Email,First Name\npiet@example.be,Piet\n")
    assert counts == {"new": 1}
    assert contacts(app)["piet@example.be"].first_name == "Piet"


def test_g1_a_one_column_file_is_not_split_on_a_letter(app):
    counts, _, _ = run(app, b"email\njan@example.be\nmarie@example.be\n")
    assert counts == {"new": 2}


def test_g2_a_utf8_bom_does_not_hide_the_email_header(app):
    counts, _, _ = run(app, "\ufeffemail;voornaam\njan@example.be;Jan\n".encode("utf-8"))
    assert counts == {"new": 1}


def test_g3_a_windows_1252_file_keeps_accented_names(app):
    run(
        app,
        "Adresse e-mail;Prénom;Société\nfrancois@example.be;François;Crème & Co\n".encode("cp1252"),
    )
    contact = contacts(app)["francois@example.be"]
    assert (contact.first_name, contact.company) == ("François", "Crème & Co")


def test_g4_a_utf16_tab_separated_unicode_text_export_is_read(app):
    content = "Email\tFirst Name\nzoë@example.be\tZoë\n".encode("utf-16")
    counts, _, _ = run(app, content, "export.txt")
    assert counts == {"invalid": 1}, "a non-ASCII local part is refused, with its line"
    content = "Email\tFirst Name\nzoe@example.be\tZoë\n".encode("utf-16")
    counts, _, _ = run(app, content, "export.txt")
    assert counts == {"new": 1}
    assert contacts(app)["zoe@example.be"].first_name == "Zoë"


def test_g5_a_zip_or_a_binary_renamed_to_csv_is_refused_and_never_unpacked(app):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("contacts.csv", "email\njan@example.be\n")
    for content in (archive.getvalue(), b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)):
        with app.app_context(), pytest.raises(readers.ReadError) as refused:
            imports.import_contacts(io.BytesIO(content), filename="contacts.csv", provenance=EVENT)
        assert refused.value.code in ("zip", "binary", "unsupported")
    assert contacts(app) == {}


def test_g6_a_field_over_the_csv_limit_is_one_row_error_and_the_rest_imports(app):
    content = b"email;notes\njan@example.be;" + b"x" * 140_000 + b"\nmarie@example.be;ok\n"
    counts, outcomes, _ = run(app, content)
    assert counts == {"invalid": 1, "new": 1}
    assert [
        reason
        for (line, _), (outcome, reason) in outcomes.items()
        if outcome is ImportOutcome.INVALID
    ] == ["field_too_large"]


def test_g8_duplicates_in_the_file_and_existing_subscribers_are_reported_not_asked(
    app, client, smtp
):
    from builders import seed_topics, subscribe

    seed_topics(app)
    subscribe(app, client, smtp, "subscribed@example.be")
    content = b"email\nJan@Example.be\njan@example.be \nsubscribed@example.be\n"
    counts, _, _ = run(app, content)
    assert counts == {"new": 1, "duplicate": 1, "already-subscribed": 1}


def test_g9_invalid_addresses_get_their_line_and_reason_and_valid_rows_import(app):
    content = b"email\njan@example.be\nnot-an-address\njan@\nmarie@example.be\n"
    counts, outcomes, batch_id = run(app, content)
    assert counts == {"new": 2, "invalid": 2}
    invalid = sorted(
        (line, reason) for (line, _), (o, reason) in outcomes.items() if o is ImportOutcome.INVALID
    )
    assert invalid == [(3, "syntax"), (4, "domain")]
    with app.app_context():
        report = "".join(imports.report_csv(batch_id))
    assert report.splitlines()[0] == "line,email,outcome,reason,address_kind"
    assert "3,not-an-address,invalid,syntax," in report


@pytest.mark.parametrize("name", ['=HYPERLINK("http://x","click")', "+cmd", "@SUM(A1)", "-1+1"])
def test_g10_formula_names_are_stored_as_text_and_neutralised_in_the_report(app, name):
    content = f"email;voornaam\n{name}@example.be;{name}\nok@example.be;{name}\n".encode()
    _, _, batch_id = run(app, content)
    assert contacts(app)["ok@example.be"].first_name == name, "stored verbatim"
    with app.app_context():
        report = "".join(imports.report_csv(batch_id))
    for line in report.splitlines()[1:]:
        email = line.split(",")[1]
        assert not email.startswith(("=", "+", "@", "-")), line


@pytest.mark.parametrize(
    "header", ["E-mail", "e-mailadres", "Adresse e-mail", "Courriel", "EMAIL "]
)
def test_g11_header_variants_blank_lines_and_quoted_fields_are_handled(app, header):
    content = f'{header};Bedrijf\n\n"jan@example.be";"Peeters; Zonen"\n\n'.encode()
    counts, _, _ = run(app, content)
    assert counts == {"new": 1}
    assert contacts(app)["jan@example.be"].company == "Peeters; Zonen"


def test_g12_two_addresses_in_one_cell_become_two_rows(app):
    counts, outcomes, _ = run(app, b"email\njan@example.be / info@example.be\n")
    assert counts == {"new": 2, "role": 1}
    assert {line for line, _ in outcomes} == {2}


def test_g13_suppressed_and_unsubscribed_addresses_are_skipped(app):
    with app.app_context():
        suppression.add("erased@example.be", SuppressionReason.ERASED)
        db.session.commit()
    counts, _, _ = run(app, b"email\nerased@example.be\nnew@example.be\n")
    assert counts == {"suppressed": 1, "new": 1}
    assert "erased@example.be" not in contacts(app)


def test_g14_an_address_asked_within_a_year_is_not_asked_again(app):
    with app.app_context():
        db.session.add(AskedMarker(digest=suppression.digest("asked@example.be")))
        db.session.commit()
    counts, _, _ = run(app, b"email\nasked@example.be\n")
    assert counts == {"asked-recently": 1}


def test_g16_an_import_never_subscribes_anyone(app):
    run(app, b"email;status\njan@example.be;subscribed\n")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Subscription)) == 0
        contact = db.session.scalar(select(Contact))
        assert contact.source is ContactSource.IMPORT and contact.import_batch_id is not None


@pytest.mark.parametrize("missing", ["event", "date", "method"])
def test_g17_an_import_without_provenance_is_refused(app, runner, tmp_path, missing):
    with pytest.raises(imports.ProvenanceMissing):
        imports.Provenance.checked(
            "" if missing == "event" else "Expo",
            None if missing == "date" else date(2026, 1, 1),
            "" if missing == "method" else "sheet",
            "anna@example.be",
        )
    path = tmp_path / "c.csv"
    path.write_bytes(b"email\njan@example.be\n")
    result = runner.invoke(args=["contacts", "import", str(path), "--event", "  ", "--event-date", "2026-11-16",
                                 "--collected-by", "sheet"])  # fmt: skip
    assert result.exit_code == 2 and "event name" in result.output
    assert contacts(app) == {}


def test_f4_an_unsubscribe_during_an_import_is_never_undone(app, client, smtp):
    from builders import seed_topics, subscribe

    from preference_center.services import subscriptions

    seed_topics(app)
    subscribe(app, client, smtp, "leaving@example.be")
    with app.app_context():
        contact_id = db.session.scalar(
            select(Contact.id).where(Contact.email == "leaving@example.be")
        )
        subscriptions.unsubscribe_all(
            contact_id, channel="one-click", client=subscriptions.Client(None, None)
        )
    counts, _, _ = run(app, b"email\nleaving@example.be\n")
    assert counts == {"unsubscribed": 1}
    with app.app_context():
        statuses = db.session.scalars(select(Subscription.status)).all()
    assert {s.value for s in statuses} == {"unsubscribed"}


def test_the_command_line_import_prints_the_report_and_is_audited(app, runner, tmp_path):
    path = tmp_path / "expo.csv"
    path.write_bytes(b"E-mail;Voornaam;Taal\njan@example.be;Jan;FR\nbad\n")
    result = runner.invoke(args=["contacts", "import", str(path), "--event", "Expo", "--event-date",
                                 "2026-11-16", "--collected-by", "business-card", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["counts"] == {"new": 1, "invalid": 1} and len(data["sha256"]) == 64
    assert contacts(app)["jan@example.be"].language == "fr"
    with app.app_context():
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "import"))
        assert entry.detail["event"] == "Expo"


@pytest.mark.parametrize(
    ("folder", "name", "expected"),
    [
        ("linkedin", "kawsay__linkedin_Connections.csv", None),
        ("eventbrite", "eb2ez__eventbrite_attendee_report_test_input_file_1.csv", None),
        ("badge-lead", "trade-show-intelligence__sample-badge-scans-50.csv", None),
        ("badge-lead", "trade-show-intelligence__duplicate-scans.csv", None),
        ("mailchimp", "ghost-migrate__mailchimp_subscribed.csv", None),
        ("app-exports", "horde-data__examples_Outlook.csv", None),
    ],
)
def test_real_exports_import_with_a_consistent_report(app, folder, name, expected):
    path = shared_testdata("contact-csv", folder, name)
    counts, outcomes, _ = run(app, path.read_bytes(), name)
    assert sum(v for k, v in counts.items() if k not in ("role", "disposable")) == len(outcomes)
    assert counts.get("new", 0) >= 1
    stored = contacts(app)
    assert all(c.source is ContactSource.IMPORT for c in stored.values())
    assert len(stored) == counts.get("new", 0)


def test_every_vcard_in_the_test_data_imports_without_a_technical_failure(app):
    folder = shared_testdata("vcard")
    imported = 0
    for path in sorted(folder.glob("*.vcf")):
        try:
            counts, _, _ = run(app, path.read_bytes(), path.name)
        except readers.ReadError as exc:
            assert exc.code in ("no_email_column", "empty"), (path.name, exc.code)
            continue
        imported += counts.get("new", 0)
    assert imported > 10


def test_the_asked_window_is_a_year():
    assert timedelta(days=365) == import_chunks.ASK_AGAIN_AFTER


def test_g13_an_address_suppressed_under_a_rotated_key_stays_suppressed(app):
    app.config["SUPPRESSION_KEY"] = "old-key"
    with app.app_context():
        suppression.add("erased@example.be", SuppressionReason.ERASED)
        db.session.commit()
    app.config.update(SUPPRESSION_KEY="new-key", SUPPRESSION_KEY_FALLBACKS=["old-key"])
    counts, _, _ = run(app, b"email\nerased@example.be\n")
    assert counts == {"suppressed": 1}


def test_an_import_gives_the_frozen_objects_back_to_the_garbage_collector(app, monkeypatch):
    """_older_objects_frozen freezes during the import only, and never undoes another freeze."""
    import gc

    frozen_during = []
    real_write_chunk = imports.write_chunk

    def write_chunk(run_, chunk):
        frozen_during.append(gc.get_freeze_count())
        return real_write_chunk(run_, chunk)

    monkeypatch.setattr(imports, "write_chunk", write_chunk)
    assert gc.get_freeze_count() == 0
    counts, _, _ = run(app, b"email\njan@example.be\n")
    assert counts == {"new": 1}
    assert frozen_during and all(frozen_during)
    assert gc.get_freeze_count() == 0
    gc.freeze()  # someone else's freeze (a pre-fork hook) is left as it was
    try:
        run(app, b"email\nmarie@example.be\n")
        assert gc.get_freeze_count() > 0  # not unfrozen (frozen objects freed meanwhile leave)
    finally:
        gc.unfreeze()

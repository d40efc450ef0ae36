"""The marketers' upload pages (catalogue rows G5-G7, G15, G17) and the batch funnel."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from builders import hidden, seed_topics
from sqlalchemy import select
from test_admin import PASSWORD, make_user, sign_in

from preference_center.extensions import db
from preference_center.models import Contact, ImportBatch, ImportStatus
from preference_center.services import imports

CSV = "Naam;E-mailadres;Bedrijf\nJan Peeters;jan@example.be;Peeters NV\nMarie;marie@example.be;\nbad;nope;\n"


@pytest.fixture
def marketer(app):
    seed_topics(app)
    make_user(app, "anna@example.be", "marketer")
    client = app.test_client()
    sign_in(client, "anna@example.be")
    return client


def upload(client, content=None, filename="expo.csv", **fields):
    content = CSV.encode("cp1252") if content is None else content
    page = client.get("/admin/imports/new").get_data(as_text=True)
    data = {"csrf_token": hidden(page, "csrf_token"), "event_name": "Horeca Expo Gent",
            "event_date": "2026-11-16", "collected_by": "badge-scan", "language": "nl",
            "file": (io.BytesIO(content), filename)}  # fmt: skip
    data.update(fields)
    return client.post("/admin/imports/new", data=data, content_type="multipart/form-data",
                       headers={"Referer": "https://prefs.example.be/admin/imports/new"})  # fmt: skip


def post(client, path, **data):
    page = client.get(path).get_data(as_text=True)
    token = re.findall(r'name="csrf_token" type="hidden" value="([^"]+)"', page)[-1]
    return client.post(path, data={"csrf_token": token, **data},
                       headers={"Referer": f"https://prefs.example.be{path}"})  # fmt: skip


def test_a_marketer_uploads_checks_the_columns_imports_and_asks_permission(app, marketer, smtp):
    response = upload(marketer)
    assert response.status_code == 303
    preview = response.headers["Location"]
    page = marketer.get(preview).get_data(as_text=True)
    assert "jan@example.be" in page and "E-mailadres" in page
    done = post(marketer, preview, action="import", encoding="cp1252", delimiter=";",
                **{"map-email": "1", "map-first_name": "0", "map-company": "2"})  # fmt: skip
    assert done.status_code == 303
    batch_page = done.headers["Location"]
    assert "waiting" in marketer.get(batch_page, headers={"Accept-Language": "en"}).get_data(
        as_text=True
    )
    with app.app_context():
        assert imports.run_queued() is not None
    page = marketer.get(batch_page, headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "report.csv" in page and "Send the permission email" in page
    with app.app_context():
        batch = db.session.scalar(select(ImportBatch))
        assert batch.counts == {"new": 2, "invalid": 1}
        assert (
            db.session.scalar(select(Contact).where(Contact.email == "jan@example.be")).company
            == "Peeters NV"
        )
    report = marketer.get(f"{batch_page}/report.csv").get_data(as_text=True)
    assert "4,nope,invalid" in report
    response = marketer.post(
        f"{batch_page}/send",
        data={
            "csrf_token": re.findall(r'name="csrf_token" type="hidden" value="([^"]+)"', page)[-1],
            "topics": ["newsletter"],
        },
        headers={"Referer": "https://prefs.example.be" + batch_page},
    )
    assert response.status_code == 303
    page = marketer.get(batch_page, headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "<svg" in page and "Mailed" in page
    listing = marketer.get("/admin/imports/").get_data(as_text=True)
    assert "Horeca Expo Gent" in listing


def test_g5_a_zip_is_refused_with_a_clear_message_and_nothing_is_kept(app, marketer):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.csv", "email\njan@example.be\n")
    response = upload(marketer, archive.getvalue(), "contacts.csv")
    assert response.status_code == 400
    assert "zip" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(ImportBatch)) is None


def test_g6_a_file_over_the_size_limit_gets_413(app, marketer):
    app.config["MAX_CONTENT_LENGTH"] = 50_000
    response = upload(marketer, b"email\n" + b"x@example.be\n" * 10_000)
    assert response.status_code == 413


def test_g7_the_import_runs_in_the_worker_not_in_the_request(app, marketer):
    response = upload(marketer)
    preview = response.headers["Location"]
    post(marketer, preview, action="import", **{"map-email": "1"})
    with app.app_context():
        batch = db.session.scalar(select(ImportBatch))
        assert batch.status is ImportStatus.QUEUED, "the request only queued it"
        assert db.session.scalar(select(Contact)) is None


def test_g15_no_csrf_no_role_or_someone_elses_batch_means_no_import(app, marketer):
    no_token = marketer.post("/admin/imports/new", data={"event_name": "x"},
                             headers={"Referer": "https://prefs.example.be/admin/imports/new"})  # fmt: skip
    assert no_token.status_code == 400
    make_user(app, "dpo@example.be", "dpo")
    dpo = app.test_client()
    sign_in(dpo, "dpo@example.be")
    assert dpo.get("/admin/imports/new").status_code == 403
    response = upload(marketer)
    preview = response.headers["Location"]
    make_user(app, "other@example.be", "marketer")
    other = app.test_client()
    sign_in(other, "other@example.be")
    assert other.get(preview).status_code == 404
    assert other.get(preview.replace("/preview", "")).status_code == 404
    assert other.get(preview.replace("/preview", "/report.csv")).status_code == 404


def test_g17_an_upload_without_an_event_is_refused(app, marketer):
    response = upload(marketer, event_name="")
    assert response.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(ImportBatch)) is None


def test_the_worker_loop_runs_queued_imports(app, marketer, runner):
    response = upload(marketer)
    post(marketer, response.headers["Location"], action="import", **{"map-email": "1"})
    result = runner.invoke(args=["outbox", "work", "--once", "--json"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert db.session.scalar(select(ImportBatch)).status is ImportStatus.IMPORTED
    assert PASSWORD

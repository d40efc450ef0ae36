"""The marketers' pages: upload an event list, check its columns, import, ask for permission.

A marketer sees only their own batches (another's id answers 404, G15); an admin sees all.
The import itself runs in the worker, so no request waits on a 100,000-row file (G7).
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from sqlalchemy import select
from wtforms import DateField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from .. import readers
from ..config import SUPPORTED_LOCALES
from ..extensions import client_ip, db
from ..forms import ButtonForm
from ..i18n import NATIVE_NAMES
from ..models import CollectedBy, ImportBatch, ImportStatus, Role, Topic
from ..services import imports, repermission
from .admin import requires

bp = Blueprint("imports", __name__, url_prefix="/admin/imports")

COLLECTED_BY = {
    CollectedBy.BUSINESS_CARD: _l("Business cards"),
    CollectedBy.BADGE_SCAN: _l("Badge scanner"),
    CollectedBy.SHEET: _l("Sign-up sheet"),
    CollectedBy.OTHER: _l("Other"),
}
READ_ERRORS = {
    "empty": _l("The file is empty."),
    "zip": _l("This is an archive (zip), not a contact list. Please upload the file itself."),
    "xls": _l(
        "This is an old Excel file (.xls) or a protected workbook. Please save it as .xlsx or CSV."
    ),
    "binary": _l("This is not a text file, a workbook or a vCard."),
    "encoding": _l("We cannot read the characters of this file. Please choose another encoding."),
    "unsupported": _l("This kind of file is not supported. Please upload CSV, .xlsx or .vcf."),
    "xlsx": _l("This workbook cannot be read."),
    "sheet": _l("This workbook has no sheet with that name."),
    "too_large": _l("This file is too large."),
    "no_email_column": _l("We found no column with email addresses. Please choose it below."),
}
OUTCOMES = {
    "new": _l("New: will be asked for permission"),
    "already-subscribed": _l("Already subscribed: not mailed again"),
    "unsubscribed": _l("Unsubscribed earlier: never mailed"),
    "duplicate": _l("Twice in the file"),
    "suppressed": _l("Refused or erased: never mailed"),
    "asked-recently": _l("Asked within the last 12 months: not asked again"),
    "invalid": _l("Invalid address"),
    "role": _l("Role addresses among the valid ones (info@, sales@ …)"),
    "disposable": _l("Disposable addresses among the valid ones"),
}
STATUSES = {
    "preview": _l("being checked"),
    "queued": _l("waiting to be imported"),
    "importing": _l("importing"),
    "imported": _l("imported"),
    "failed": _l("failed"),
}
FUNNEL = {
    "imported": _l("Imported"),
    "mailed": _l("Mailed"),
    "delivered": _l("Delivered"),
    "bounced": _l("Bounced"),
    "confirmed": _l("Confirmed"),
    "refused": _l("Refused"),
    "purged": _l("Purged at the deadline"),
}


class UploadForm(FlaskForm):
    file = FileField(_l("Contact file (CSV, .xlsx or .vcf)"), validators=[FileRequired()])
    event_name = StringField(_l("Event"), validators=[DataRequired(), Length(max=200)])
    event_date = DateField(_l("Date of the event"), validators=[DataRequired()])
    collected_by = SelectField(
        _l("How the addresses were collected"),
        choices=[SelectChoice(c.value, label) for c, label in COLLECTED_BY.items()],
    )
    language = SelectField(
        _l("Language of the permission email when the file gives none"),
        choices=[SelectChoice(code, NATIVE_NAMES[code]) for code in SUPPORTED_LOCALES],
    )


def _batch(batch_id: int) -> ImportBatch:
    batch = db.session.get(ImportBatch, batch_id)
    if batch is None:
        abort(404)
    if current_user.role is not Role.ADMIN and batch.uploaded_by != current_user.email:
        abort(404)  # not 403: nobody learns that another marketer's batch exists
    return batch


@bp.app_context_processor
def import_helpers() -> dict[str, Any]:
    return {
        "collected_by_label": lambda code: COLLECTED_BY.get(CollectedBy(code), code),
        "outcome_label": lambda code: OUTCOMES.get(code, code),
        "funnel_label": lambda code: FUNNEL.get(code, code),
        "import_status": lambda code: STATUSES.get(code, code),
    }


@bp.get("/")
@requires(Role.ADMIN, Role.MARKETER)
def index() -> Any:
    query = (
        select(ImportBatch)
        .where(ImportBatch.status != ImportStatus.PREVIEW)
        .order_by(ImportBatch.id.desc())
    )
    if current_user.role is not Role.ADMIN:
        query = query.where(ImportBatch.uploaded_by == current_user.email)
    batches = list(db.session.scalars(query.limit(200)))
    rates = {}
    for batch in batches:
        figures = repermission.funnel(batch.id)
        rates[batch.id] = (figures["confirmed"] / figures["mailed"]) if figures["mailed"] else None
    return render_template("admin/imports.html", batches=batches, rates=rates, button=ButtonForm())


@bp.route("/new", methods=["GET", "POST"])
@requires(Role.ADMIN, Role.MARKETER)
def upload() -> Any:
    form = UploadForm()
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                provenance = imports.Provenance.checked(
                    form.event_name.data,
                    form.event_date.data,
                    form.collected_by.data,
                    current_user.email,
                )
                batch = imports.start_upload(
                    form.file.data.stream, filename=form.file.data.filename or "upload",
                    provenance=provenance, language=form.language.data,
                )  # fmt: skip
            except imports.ProvenanceMissing:
                form.event_name.errors = [_("Event name, date and collection method are required.")]
                status = 400
            except readers.ReadError as exc:
                form.file.errors = [str(READ_ERRORS.get(exc.code, READ_ERRORS["unsupported"]))]
                status = 400
            else:
                return redirect(url_for(".preview", batch_id=batch.id)), 303
        else:
            status = 400
    return render_template("admin/upload.html", form=form, button=ButtonForm()), status


@bp.route("/<int:batch_id>/preview", methods=["GET", "POST"])
@requires(Role.ADMIN, Role.MARKETER)
def preview(batch_id: int) -> Any:
    batch = _batch(batch_id)
    if batch.status is not ImportStatus.PREVIEW:
        return redirect(url_for(".batch", batch_id=batch.id)), 303
    form = ButtonForm()
    error = None
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        mapping = {}
        for field in ("email", "first_name", "last_name", "full_name", "company", "language"):
            value = request.form.get(f"map-{field}", "")
            mapping[field] = int(value) if value.isdigit() else None
        options = {
            "encoding": request.form.get("encoding") or None,
            "delimiter": {"tab": "\t"}.get(
                request.form.get("delimiter", ""), request.form.get("delimiter") or None
            ),
            "sheet": request.form.get("sheet") or None,
            "mapping": mapping,
        }
        try:
            imports.set_options(batch, options)
        except readers.ReadError as exc:
            error = str(READ_ERRORS.get(exc.code, READ_ERRORS["unsupported"]))
        else:
            if request.form.get("action") == "import":
                if mapping.get("email") is None:
                    error = str(READ_ERRORS["no_email_column"])
                else:
                    imports.queue(batch)
                    return redirect(url_for(".batch", batch_id=batch.id)), 303
    try:
        info = imports.preview(batch)
    except readers.ReadError as exc:
        info, error = None, str(READ_ERRORS.get(exc.code, READ_ERRORS["unsupported"]))
    return render_template(
        "admin/preview.html", batch=batch, info=info, error=error, form=form, button=form,
        mapping=(batch.options or {}).get("mapping") or (info.mapping if info else {}),
    ), (400 if error else 200)  # fmt: skip


@bp.get("/<int:batch_id>")
@requires(Role.ADMIN, Role.MARKETER)
def batch(batch_id: int) -> Any:
    found = _batch(batch_id)
    topics = list(db.session.scalars(select(Topic).order_by(Topic.position, Topic.id)))
    figures = repermission.funnel(found.id) if found.status is ImportStatus.IMPORTED else None
    return render_template(
        "admin/batch.html", batch=found, progress=imports.progress_of(found), topics=topics,
        figures=figures, button=ButtonForm(),
    )  # fmt: skip


@bp.get("/<int:batch_id>/report.csv")
@requires(Role.ADMIN, Role.MARKETER)
def report(batch_id: int) -> Response:
    found = _batch(batch_id)
    # Streamed row by row; the context keeps the database session alive while it runs.
    response = Response(stream_with_context(imports.report_csv(found.id)), mimetype="text/csv")
    response.headers["Content-Disposition"] = f"attachment; filename=import-{found.id}-report.csv"
    return response


@bp.post("/<int:batch_id>/send")
@requires(Role.ADMIN, Role.MARKETER)
def send(batch_id: int) -> Any:
    found = _batch(batch_id)
    if not ButtonForm().validate_on_submit():
        abort(400)
    slugs = request.form.getlist("topics")
    try:
        queued = repermission.send(found.id, slugs, actor=current_user.email, ip=client_ip())
    except repermission.CampaignError:
        flash(_("Choose at least one topic to ask permission for."), "error")
    else:
        flash(
            ngettext(
                "%(num)d permission email is on its way.",
                "%(num)d permission emails are on their way.",
                queued,
            ),
            "success",
        )
    return redirect(url_for(".batch", batch_id=found.id)), 303

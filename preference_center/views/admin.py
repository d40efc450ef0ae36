"""The staff side: sign in, users, the audit log (imports and campaigns build on it).

Every view states the roles it admits with :func:`requires`; a test walks every admin URL with
every role.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from ..extensions import client_ip, limiter
from ..forms import ButtonForm
from ..models import Role
from ..services import accounts, audit

bp = Blueprint("admin", __name__, url_prefix="/admin")

View = TypeVar("View", bound=Callable[..., Any])

ROLE_NAMES = {
    Role.ADMIN: _l("Administrator"),
    Role.MARKETER: _l("Marketer"),
    Role.DPO: _l("Data protection officer"),
}


def requires(*roles: Role) -> Callable[[View], View]:
    """Admit signed-in staff with one of ``roles``; anyone else gets 403 (or the login page)."""

    def decorate(view: View) -> View:
        @wraps(view)
        @login_required
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        wrapped.required_roles = roles  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorate


def actor() -> str:
    return current_user.email if current_user.is_authenticated else "anonymous"


class LoginForm(FlaskForm):
    email = StringField(_l("Email address"), validators=[DataRequired(), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1024)])


class UserForm(FlaskForm):
    email = StringField(_l("Email address"), validators=[DataRequired(), Length(max=254)])
    role = SelectField(_l("Role"), choices=[SelectChoice(r.value, ROLE_NAMES[r]) for r in Role])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1024)])


@bp.app_context_processor
def staff_helpers() -> dict[str, Any]:
    return {
        "role_name": lambda role: ROLE_NAMES.get(Role(role), role),
        "has_imports": "imports.index" in current_app.view_functions,
    }


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], methods=["POST"])
def login() -> Any:
    form = LoginForm()
    if form.validate_on_submit():
        user = accounts.authenticate(form.email.data, form.password.data, ip=client_ip())
        if user is not None:
            login_user(user)
            return redirect(url_for(".dashboard")), 303
        form.password.errors = [
            _("This email address and password do not match an active account.")
        ]
        return render_template("admin/login.html", form=form), 401
    return render_template("admin/login.html", form=form)


@bp.post("/logout")
@login_required
def logout() -> Any:
    if not ButtonForm().validate_on_submit():
        abort(400)
    logout_user()
    return redirect(url_for(".login")), 303


@bp.get("/")
@requires(Role.ADMIN, Role.MARKETER, Role.DPO)
def dashboard() -> Any:
    return render_template("admin/dashboard.html", button=ButtonForm())


@bp.get("/audit")
@requires(Role.ADMIN, Role.DPO)
def audit_log() -> Any:
    before = request.args.get("before", type=int)
    entries = audit.latest(limit=200, before_id=before)
    return render_template("admin/audit.html", entries=entries, button=ButtonForm())


@bp.route("/users", methods=["GET", "POST"])
@requires(Role.ADMIN)
def users() -> Any:
    form = UserForm()
    status = 200
    if form.validate_on_submit():
        try:
            user = accounts.create(
                form.email.data, form.role.data, form.password.data, actor=actor(), ip=client_ip()
            )
        except accounts.AccountError as exc:
            form.email.errors = [str(exc)]
            status = 400
        else:
            flash(_("Account created for %(email)s.", email=user.email), "success")
            return redirect(url_for(".users")), 303
    return (
        render_template(
            "admin/users.html", users=accounts.all_users(), form=form, button=ButtonForm()
        ),
        status,
    )


@bp.post("/users/<int:user_id>/deactivate")
@requires(Role.ADMIN)
def deactivate(user_id: int) -> Any:
    if not ButtonForm().validate_on_submit():
        abort(400)
    from ..extensions import db
    from ..models import User

    user = db.session.get(User, user_id) or abort(404)
    accounts.deactivate(user.email, actor=actor(), ip=client_ip())
    flash(_("The account of %(email)s is deactivated.", email=user.email), "success")
    return redirect(url_for(".users")), 303

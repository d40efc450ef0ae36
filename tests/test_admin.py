"""Staff accounts, roles, sign-in and the audit log (issue: marketers)."""

from __future__ import annotations

import pytest
from builders import hidden
from sqlalchemy import select

from preference_center.extensions import db
from preference_center.models import AuditEntry, Role, User
from preference_center.services import accounts

PASSWORD = "correct horse battery staple"


def make_user(app, email, role):
    with app.app_context():
        accounts.create(email, role, PASSWORD)


def sign_in(client, email, password=PASSWORD):
    page = client.get("/admin/login").get_data(as_text=True)
    return client.post(
        "/admin/login",
        data={"csrf_token": hidden(page, "csrf_token"), "email": email, "password": password},
        headers={"Referer": "https://prefs.example.be/admin/login"},
    )


def audit_actions(app):
    with app.app_context():
        return [e.action for e in db.session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def test_users_are_created_listed_and_deactivated_from_the_command_line(app, runner):
    result = runner.invoke(
        args=[
            "users",
            "create",
            "Anna@Example.be",
            "--role",
            "marketer",
            "--password-stdin",
            "--json",
        ],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert '"email": "anna@example.be"' in result.output
    listed = runner.invoke(args=["users", "list"]).output
    assert "anna@example.be" in listed and "marketer" in listed and "active" in listed
    assert runner.invoke(args=["users", "deactivate", "anna@example.be"]).exit_code == 0
    assert "deactivated" in runner.invoke(args=["users", "list"]).output
    with app.app_context():
        user = db.session.scalar(select(User))
        assert user.password_hash.startswith("scrypt:") and PASSWORD not in user.password_hash
    assert audit_actions(app) == ["user.create", "user.deactivate"]


@pytest.mark.parametrize(
    ("email", "role", "password", "message"),
    [
        ("not-an-address", "admin", PASSWORD, "valid email"),
        ("a@example.be", "root", PASSWORD, "not one of"),
        ("a@example.be", "admin", "short", "at least 12"),
    ],
)
def test_bad_accounts_are_refused_with_a_reason(app, runner, email, role, password, message):
    result = runner.invoke(
        args=["users", "create", email, "--role", role, "--password-stdin"], input=password + "\n"
    )
    assert result.exit_code == 2
    assert message in result.output


def test_signing_in_works_with_the_right_password_only_and_is_audited(app, client):
    make_user(app, "anna@example.be", "marketer")
    assert sign_in(client, "anna@example.be", "wrong password!!").status_code == 401
    assert client.get("/admin/").status_code == 302
    response = sign_in(client, "Anna@example.be")
    assert response.status_code == 303
    assert client.get("/admin/").status_code == 200
    assert audit_actions(app)[-2:] == ["login.failed", "login"]
    cookie = response.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie


def test_signing_in_is_rate_limited(app, client):
    app.config["LOGIN_RATE_LIMIT"] = "3 per minute"
    make_user(app, "anna@example.be", "admin")
    statuses = [sign_in(client, "anna@example.be", "guess number x").status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


def test_a_deactivated_account_is_signed_out_at_once(app, client):
    make_user(app, "anna@example.be", "admin")
    sign_in(client, "anna@example.be")
    assert client.get("/admin/users").status_code == 200
    with app.app_context():
        accounts.deactivate("anna@example.be", actor="test")
    assert client.get("/admin/users").status_code == 302
    assert sign_in(client, "anna@example.be").status_code == 401


def test_every_admin_url_admits_exactly_its_roles(app):
    for role in Role:
        make_user(app, f"{role.value}@example.be", role.value)
    rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith(("admin.", "imports."))]
    guarded = [r for r in rules if hasattr(app.view_functions[r.endpoint], "required_roles")]
    assert len(guarded) >= 3
    for role in Role:
        client = app.test_client()
        sign_in(client, f"{role.value}@example.be")
        # A real form token, so that a POST is refused for its role, not for a missing token.
        token = hidden(client.get("/admin/").get_data(as_text=True), "csrf_token")
        for rule in guarded:
            allowed = role in app.view_functions[rule.endpoint].required_roles
            url = rule.rule.replace("<int:user_id>", "999999").replace("<int:batch_id>", "999999")
            url = url.replace("<batch_id>", "999999")
            if "GET" in rule.methods:
                response = client.get(url)
            else:
                response = client.post(
                    url,
                    data={"csrf_token": token},
                    headers={"Referer": "https://prefs.example.be/admin/"},
                )
            if allowed:
                assert response.status_code in (200, 400, 404, 405), (role, rule.rule)
            else:
                assert response.status_code == 403, (role, rule.rule)
    assert any(r.endpoint.startswith("imports.") for r in guarded)
    anonymous = app.test_client()
    for rule in guarded:
        url = (
            rule.rule.replace("<int:user_id>", "1")
            .replace("<int:batch_id>", "1")
            .replace("<batch_id>", "1")
        )
        if "GET" in rule.methods:
            assert anonymous.get(url).status_code == 302, rule.rule


def test_an_admin_creates_a_user_and_the_audit_log_shows_it_to_the_dpo(app):
    make_user(app, "admin@example.be", "admin")
    make_user(app, "dpo@example.be", "dpo")
    admin = app.test_client()
    sign_in(admin, "admin@example.be")
    page = admin.get("/admin/users").get_data(as_text=True)
    response = admin.post(
        "/admin/users",
        data={
            "csrf_token": hidden(page, "csrf_token"),
            "email": "new@example.be",
            "role": "marketer",
            "password": PASSWORD,
        },
        headers={"Referer": "https://prefs.example.be/admin/users"},
    )
    assert response.status_code == 303
    dpo = app.test_client()
    sign_in(dpo, "dpo@example.be")
    log = dpo.get("/admin/audit").get_data(as_text=True)
    assert "user.create" in log and "new@example.be" in log
    assert dpo.get("/admin/users").status_code == 403


def test_the_audit_log_cannot_be_edited(app):
    make_user(app, "anna@example.be", "admin")
    with app.app_context():
        entry = db.session.scalar(select(AuditEntry))
        entry.action = "nothing happened"
        with pytest.raises(ValueError, match="append-only"):
            db.session.commit()
        db.session.rollback()

"""Settings, host and proxy handling, languages, error pages and headers.

Catalogue rows: J1, J2, J3, I1, I2, I3.
"""

from __future__ import annotations

import pytest
from flask import request

from preference_center import create_app
from preference_center.config import ConfigurationError
from preference_center.i18n import select_locale


def _app(tmp_path, **config):
    base = {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    base.update(config)
    return create_app(base, instance_path=str(tmp_path / "instance"))


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("FLASK_SECRET_KEY", "FLASK_DEBUG", "FLASK_MAIL_SERVER", "FLASK_SERVER_NAME"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- settings ------------------------------------------------------------------------------


def test_production_refuses_to_start_without_a_secret_key_and_names_the_variable(
    tmp_path, clean_env
):
    with pytest.raises(ConfigurationError, match="FLASK_SECRET_KEY"):
        _app(tmp_path)


def test_development_generates_a_secret_once_and_keeps_it(tmp_path, clean_env):
    first = _app(tmp_path, DEBUG=True).config["SECRET_KEY"]
    second = _app(tmp_path, DEBUG=True).config["SECRET_KEY"]
    assert first == second
    assert len(first) >= 64
    assert (tmp_path / "instance" / "dev-secret-key").stat().st_mode & 0o077 == 0


def test_settings_come_from_flask_prefixed_environment_variables(tmp_path, clean_env):
    clean_env.setenv("FLASK_SECRET_KEY", "from-the-environment")
    clean_env.setenv("FLASK_MAIL_PORT", "2525")
    clean_env.setenv("FLASK_MAIL_USE_TLS", "true")
    clean_env.setenv("FLASK_SECRET_KEY_FALLBACKS", '["old-key"]')
    app = _app(tmp_path)
    assert app.config["SECRET_KEY"] == "from-the-environment"
    assert app.config["MAIL_PORT"] == 2525
    assert app.config["MAIL_USE_TLS"] is True
    assert app.config["SECRET_KEY_FALLBACKS"] == ["old-key"]


def test_the_test_mapping_wins_over_the_environment(tmp_path, clean_env):
    clean_env.setenv("FLASK_SECRET_KEY", "from-the-environment")
    assert _app(tmp_path, SECRET_KEY="from-the-test").config["SECRET_KEY"] == "from-the-test"


def test_development_without_a_mail_server_uses_the_development_mailbox(tmp_path, clean_env):
    app = _app(tmp_path, DEBUG=True)
    assert app.config["DEV_MAILBOX"] is True
    assert (app.config["MAIL_SERVER"], app.config["MAIL_PORT"]) == ("127.0.0.1", 8025)
    assert app.test_client().get("/dev/mailbox").status_code == 200


def test_the_development_mailbox_does_not_exist_in_production(tmp_path, clean_env):
    app = _app(tmp_path, SECRET_KEY="x", DEV_MAILBOX=True)
    assert app.config["DEV_MAILBOX"] is False
    assert app.test_client().get("/dev/mailbox").status_code == 404


def test_a_configured_mail_server_replaces_the_development_mailbox(tmp_path, clean_env):
    app = _app(tmp_path, DEBUG=True, MAIL_SERVER="smtp.example.be", MAIL_PORT=587)
    assert app.config["DEV_MAILBOX"] is False
    assert app.config["MAIL_SERVER"] == "smtp.example.be"


# --- host header and proxies ---------------------------------------------------------------


def test_j1_a_request_for_another_host_is_refused(client):
    response = client.get("/", headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert client.get("/", headers={"Host": "prefs.example.be"}).status_code == 200


def test_j1_j3_links_built_outside_a_request_use_the_configured_address_over_https(app):
    from flask import url_for

    with app.app_context():
        assert url_for("public.index", _external=True) == "https://prefs.example.be/"


@pytest.fixture
def echo_app(database_url, smtp, app_config):
    """An app with a route that shows what the app believes about the client."""

    def build(**config):
        from conftest import _base_config

        app = create_app(_base_config(database_url, smtp.port, **config))

        @app.get("/_echo")
        def echo():
            return {"ip": request.remote_addr, "host": request.host, "scheme": request.scheme}

        return app

    return build


def test_j2_forwarded_headers_are_ignored_without_a_trusted_proxy(echo_app):
    client = echo_app().test_client()
    data = client.get(
        "/_echo",
        headers={
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-For": "1.2.3.4",
            "X-Forwarded-Proto": "https",
        },
        base_url="http://prefs.example.be",
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    ).get_json()
    assert data == {"ip": "203.0.113.7", "host": "prefs.example.be", "scheme": "http"}


def test_j2_c8_only_the_trusted_proxy_hop_is_believed(echo_app):
    client = echo_app(PROXY_FIX_HOPS=1).test_client()
    # The client forged the first value; our proxy appended the real address.
    data = client.get(
        "/_echo",
        headers={"X-Forwarded-For": "1.2.3.4, 198.51.100.20", "X-Forwarded-Proto": "https"},
        base_url="http://prefs.example.be",
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    ).get_json()
    assert data["ip"] == "198.51.100.20"
    assert data["scheme"] == "https"


def test_j2_a_forwarded_host_that_is_not_ours_is_refused_even_behind_a_proxy(echo_app):
    client = echo_app(PROXY_FIX_HOPS=1).test_client()
    response = client.get("/_echo", headers={"X-Forwarded-Host": "evil.example"})
    assert response.status_code == 400


# --- languages -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("fr-BE,fr;q=0.9,nl;q=0.8", "fr"),
        ("nl-BE", "nl"),
        ("en-GB", "en"),
        ("de", "en"),
        ("de-DE,de;q=0.9,nl;q=0.5", "nl"),
        ("", "en"),
        (";;;q=abc,,,", "en"),
        ("x" * 10_000, "en"),
        ("fr;q=0.1, nl;q=0.9", "nl"),
    ],
)
def test_i1_accept_language_picks_our_best_language_or_the_default(client, header, expected):
    response = client.get("/", headers={"Accept-Language": header})
    assert response.status_code == 200
    assert f'<html lang="{expected}">' in response.get_data(as_text=True)
    assert "Accept-Language" in response.headers.get("Vary", "")


def test_i1_the_default_language_is_configurable(app):
    app.config["BABEL_DEFAULT_LOCALE"] = "nl"
    response = app.test_client().get("/", headers={"Accept-Language": "de"})
    assert '<html lang="nl">' in response.get_data(as_text=True)


@pytest.mark.parametrize("value", ["../../etc/passwd", "de", "NL-be", "<script>", "%00", "xx"])
def test_i2_an_unknown_lang_parameter_is_ignored(client, value):
    response = client.get("/", query_string={"lang": value}, headers={"Accept-Language": "fr"})
    assert response.status_code == 200
    assert '<html lang="fr">' in response.get_data(as_text=True)


def test_an_explicit_language_choice_wins_and_is_remembered(client):
    page = client.get("/?lang=nl", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert '<html lang="nl">' in page
    later = client.get("/", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert '<html lang="nl">' in later


def test_the_subscribers_stored_language_beats_the_browser(app):
    from flask import g

    with app.test_request_context("/", headers={"Accept-Language": "fr"}):
        g.subscriber_language = "nl"
        assert select_locale() == "nl"


def test_i3_error_pages_are_translated_and_keep_their_status(client):
    cases = {
        "nl": "Deze pagina bestaat niet",
        "fr": "Cette page n’existe pas",
        "en": "This page does not exist",
    }
    for language, title in cases.items():
        response = client.get("/no-such-page", headers={"Accept-Language": language})
        assert response.status_code == 404
        assert title in response.get_data(as_text=True)


def test_i3_405_keeps_its_allow_header_and_is_translated(client):
    response = client.delete("/", headers={"Accept-Language": "nl"})
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert "Deze handeling is hier niet mogelijk" in response.get_data(as_text=True)


def test_i3_413_is_translated(app):
    app.config["MAX_CONTENT_LENGTH"] = 10

    @app.post("/_upload")
    def upload():
        return request.get_data()

    response = app.test_client().post(
        "/_upload", data=b"x" * 100, headers={"Accept-Language": "fr"}
    )
    assert response.status_code == 413
    assert "Ce fichier est trop volumineux" in response.get_data(as_text=True)


def test_i3_429_is_translated(app):
    from preference_center.extensions import limiter

    @app.get("/_limited")
    @limiter.limit("1 per minute")
    def limited():
        return "ok"

    client = app.test_client()
    assert client.get("/_limited").status_code == 200
    response = client.get("/_limited", headers={"Accept-Language": "nl"})
    assert response.status_code == 429
    assert "Te veel aanvragen" in response.get_data(as_text=True)


def test_i3_a_server_error_shows_a_translated_page_without_details(app):
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/_boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/_boom", headers={"Accept-Language": "fr"})
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "Un problème est survenu de notre côté" in body
    assert "secret internals" not in body


def test_i3_an_expired_form_token_gets_a_translated_page_expired_message(app):
    @app.post("/_form")
    def form():
        return "saved"

    response = app.test_client().post(
        "/_form", data={"csrf_token": "stale"}, headers={"Accept-Language": "nl"}
    )
    assert response.status_code == 400
    assert "Deze pagina is verlopen" in response.get_data(as_text=True)


def test_i3_403_is_translated(app):
    from flask import abort

    @app.get("/_forbidden")
    def forbidden():
        abort(403)

    response = app.test_client().get("/_forbidden", headers={"Accept-Language": "fr"})
    assert response.status_code == 403
    assert "Vous n’avez pas accès à cette page" in response.get_data(as_text=True)


# --- headers -------------------------------------------------------------------------------


def test_pages_carry_the_security_headers(client):
    response = client.get("/")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "http" not in response.headers["Content-Security-Policy"]  # no third party
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cache-Control"] == "no-store"


def test_the_health_endpoint_answers(client):
    assert client.get("/health").get_json() == {"status": "ok"}


def test_the_start_page_lists_public_topics_in_the_page_language(app, client):
    from preference_center.extensions import db
    from preference_center.services import topics

    with app.app_context():
        topics.seed_examples()
        topics.update("events", is_public=False)
        db.session.remove()
    page = client.get("/?lang=fr").get_data(as_text=True)
    assert "Newsletter mensuelle" in page
    assert "Événements et webinaires" not in page

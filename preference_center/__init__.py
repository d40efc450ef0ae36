"""preference-center: email double opt-in and subscription preferences, GDPR-first.

``create_app`` only wires things together; it reads like a table of contents.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_login import current_user
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config


def create_app(
    test_config: dict[str, Any] | None = None, instance_path: str | None = None
) -> Flask:
    """Build the application: settings, extensions, blueprints, error pages and commands."""
    app = Flask(
        __name__,
        instance_path=instance_path,
        instance_relative_config=True,
        template_folder=str(config.TEMPLATES_DIR),
    )
    config.load(app, test_config)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(config.TRANSLATIONS_DIR))

    _wire_extensions(app)
    _wire_http(app)
    _wire_blueprints(app)

    from . import cli

    cli.register(app)
    return app


def _wire_extensions(app: Flask) -> None:
    from . import database, i18n
    from .extensions import babel, csrf, db, limiter, login_manager, mail, migrate
    from .services import accounts

    db.init_app(app)
    database.tune_engines(app)
    migrate.init_app(app, db, directory=str(config.MIGRATIONS_DIR), render_as_batch=True)
    mail.init_app(app)
    csrf.init_app(app)
    babel.init_app(app, locale_selector=i18n.select_locale)
    i18n.install_template_gettext(app)
    limiter.init_app(app)
    # current_user reaches the templates as Flask-Login's own proxy, loaded only where a
    # template uses it (the staff pages): its context processor loaded the user, anonymous or
    # not, for every page rendered, the public ones included.
    login_manager.init_app(app, add_context_processor=False)
    app.jinja_env.globals["current_user"] = current_user
    login_manager.user_loader(accounts.load)
    login_manager.login_view = "admin.login"
    # No IP/agent binding ("strong" signs people out on every mobile network change and
    # rewrites every visitor's cookie); revocation comes from User.session_version instead.
    login_manager.session_protection = None


def _wire_http(app: Flask) -> None:
    from . import errors, i18n, logs, security

    logs.install(app)

    hops = int(app.config["PROXY_FIX_HOPS"])
    if hops > 0:
        # Only behind a proxy we run: each hop we trust may set one X-Forwarded-* value.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_prefix=hops
        )
    app.context_processor(i18n.template_context)
    app.after_request(i18n.add_vary_header)
    app.after_request(security.add_headers)
    errors.register(app)


def _wire_blueprints(app: Flask) -> None:
    from .views import admin, api, dev, imports, preferences, public, webhooks

    app.register_blueprint(public.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(preferences.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(imports.bp)
    if app.config["DEV_MAILBOX"]:
        app.register_blueprint(dev.bp)

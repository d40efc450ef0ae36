"""``flask`` commands. They call the same service functions as the web views.

Every command that changes data prints what it did; ``--json`` prints it for scripts.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from . import addresses, config, readers, translations
from .i18n import validated
from .mail import devmailbox, outbox
from .services import (
    accounts,
    consent,
    imports,
    repermission,
    retention,
    system,
    topics,
    webhooks,
)

topics_cli = AppGroup("topics", help="Manage the topics people can subscribe to.")
outbox_cli = AppGroup("outbox", help="Deliver and inspect queued emails.")
mail_cli = AppGroup("mail", help="Email diagnostics.")
devmail_cli = AppGroup("devmail", help="The development mailbox (debug only).")
retention_cli = AppGroup("retention", help="Delete what may no longer be kept.")
consent_cli = AppGroup("consent-texts", help="Publish and list the consent statements.")
users_cli = AppGroup("users", help="Staff accounts: admin, marketer, dpo.")
contacts_cli = AppGroup("contacts", help="Import event contact lists.")
repermission_cli = AppGroup("repermission", help="Ask imported contacts for permission.")


def register(app: Flask) -> None:
    for group in (
        topics_cli,
        outbox_cli,
        mail_cli,
        devmail_cli,
        retention_cli,
        consent_cli,
        users_cli,
        contacts_cli,
        repermission_cli,
    ):
        app.cli.add_command(group)
    from .cli_sync import GROUPS

    for group in GROUPS:
        app.cli.add_command(group)
    # Also runnable without an app (and so without settings): python -m preference_center.translations
    app.cli.add_command(translations.cli)


def _emit(as_json: bool, data: Any, text: str) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, default=str) if as_json else text)


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(2)


# --- topics -------------------------------------------------------------------------------

_topic_options = [
    click.option("--name-nl"),
    click.option("--name-fr"),
    click.option("--name-en"),
    click.option("--description-nl"),
    click.option("--description-fr"),
    click.option("--description-en"),
    click.option("--purpose"),
    click.option("--position", type=int),
    click.option(
        "--frequencies",
        help="Comma-separated choices offered to subscribers: every-issue, weekly, monthly.",
    ),
]


def _with_topic_options(func: Any) -> Any:
    for option in reversed(_topic_options):
        func = option(func)
    return func


def _topic_fields(kwargs: dict[str, Any], public: bool | None) -> dict[str, Any]:
    fields = {k: v for k, v in kwargs.items() if v is not None}
    if "frequencies" in fields:
        fields["frequencies"] = [f.strip() for f in fields["frequencies"].split(",") if f.strip()]
    if public is not None:
        fields["is_public"] = public
    return fields


@topics_cli.command("add")
@click.argument("slug")
@_with_topic_options
@click.option("--public/--private", default=True, help="Shown on the public signup form.")
@click.option("--json", "as_json", is_flag=True)
def topics_add(slug: str, public: bool, as_json: bool, **kwargs: Any) -> None:
    """Create a topic named in nl, fr and en."""
    try:
        topic = topics.add(slug, **_topic_fields(kwargs, public))
    except topics.TopicError as exc:
        _fail(str(exc))
    _emit(as_json, topics.as_dict(topic), f"Added topic {topic.slug} ({topic.name_en}).")


@topics_cli.command("update")
@click.argument("slug")
@_with_topic_options
@click.option("--public/--private", default=None)
@click.option("--json", "as_json", is_flag=True)
def topics_update(slug: str, public: bool | None, as_json: bool, **kwargs: Any) -> None:
    """Change a topic's names, descriptions, purpose, visibility or position."""
    try:
        topic = topics.update(slug, **_topic_fields(kwargs, public))
    except topics.TopicError as exc:
        _fail(str(exc))
    _emit(as_json, topics.as_dict(topic), f"Updated topic {topic.slug}.")


@topics_cli.command("list")
@click.option("--json", "as_json", is_flag=True)
def topics_list(as_json: bool) -> None:
    """List every topic, public and private."""
    found = topics.all_topics()
    if as_json:
        _emit(True, [topics.as_dict(t) for t in found], "")
        return
    if not found:
        click.echo("No topics yet. Add one with `flask topics add SLUG --name-nl ... `.")
    for topic in found:
        visibility = "public" if topic.is_public else "private"
        click.echo(
            f"{topic.slug:<24} {visibility:<8} {topic.name_nl} / {topic.name_fr} / {topic.name_en}"
        )


@topics_cli.command("remove")
@click.argument("slug")
def topics_remove(slug: str) -> None:
    """Delete a topic that never had a subscriber."""
    try:
        topics.remove(slug)
    except topics.TopicError as exc:
        _fail(str(exc))
    click.echo(f"Removed topic {slug}.")


@topics_cli.command("seed")
def topics_seed() -> None:
    """Load three example topics, only into a database that has none."""
    added = topics.seed_examples()
    if added:
        click.echo(f"Loaded {len(added)} example topics: {', '.join(t.slug for t in added)}.")
    else:
        click.echo("Topics exist already; nothing loaded.")


# --- outbox -------------------------------------------------------------------------------


@outbox_cli.command("work")
@click.option("--once", is_flag=True, help="Deliver everything that is due, then exit.")
@click.option("--batch-size", type=int, default=None)
@click.option("--poll-interval", type=float, default=None, help="Seconds between polls when idle.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 32),
    default=None,
    help="SMTP connections sending at once, one thread each (default OUTBOX_CONCURRENCY, 2).",
)
@click.option("--json", "as_json", is_flag=True)
def outbox_work(
    once: bool,
    batch_size: int | None,
    poll_interval: float | None,
    concurrency: int | None,
    as_json: bool,
) -> None:
    """Run the outbox worker (any number may run at once on PostgreSQL)."""
    worker = outbox.Worker(
        batch_size=batch_size, poll_interval=poll_interval, concurrency=concurrency
    )
    worker.side_jobs.append(imports.run_queued)  # uploads from the web are imported here
    worker.side_jobs.append(webhooks.dispatch)  # the change feed pushed to the mailing list
    if not once:
        config_ = current_app.config
        click.echo(
            f"Outbox worker {worker.name} sending through {config_['MAIL_SERVER']}:{config_['MAIL_PORT']}"
            + (f" over {worker.concurrency} connections" if worker.concurrency > 1 else "")
            + " (Ctrl-C to stop)."
        )

    def progress(report: outbox.BatchReport) -> None:
        if not as_json:
            click.echo(
                f"batch: {report.sent} sent, {report.retried} to retry, {report.failed} failed"
            )

    total = worker.run(once=once, on_batch=progress)
    summary = {"sent": total.sent, "retried": total.retried, "failed": total.failed}
    _emit(
        as_json,
        summary,
        f"Done: {total.sent} sent, {total.retried} to retry, {total.failed} failed.",
    )


@outbox_cli.command("status")
@click.option("--json", "as_json", is_flag=True)
def outbox_status(as_json: bool) -> None:
    """Count queued, sent and failed emails."""
    counts = outbox.counts()
    _emit(as_json, counts, ", ".join(f"{k}: {v}" for k, v in counts.items()))


# --- mail ---------------------------------------------------------------------------------


@mail_cli.command("send-test")
@click.argument("address")
@click.option("--language", default="en", show_default=True, help="nl, fr or en")
@click.option("--json", "as_json", is_flag=True)
def mail_send_test(address: str, language: str, as_json: bool) -> None:
    """Queue a test email to ADDRESS; `flask outbox work` delivers it."""
    if not validated(language):
        _fail("--language must be one of nl, fr, en")
    try:
        row = system.send_test_message(address, language.lower())
    except addresses.InvalidAddress as exc:
        _fail(f"not a usable email address ({exc.reason})")
    data = {"id": row.id, "message_id": row.message_id, "to": addresses.mask(row.to_address)}
    _emit(as_json, data, f"Queued test message {row.id} ({row.message_id}) to {data['to']}.")


# --- development mailbox ------------------------------------------------------------------


@devmail_cli.command("serve")
@click.option("--port", type=int, default=None)
def devmail_serve(port: int | None) -> None:
    """Catch every email on 127.0.0.1 and show it at /dev/mailbox."""
    if not current_app.config["DEV_MAILBOX"]:
        _fail("the development mailbox only runs with debug on and no FLASK_MAIL_SERVER set")
    port = port or int(current_app.config["DEV_MAILBOX_PORT"])
    controller = devmailbox.serve(current_app._get_current_object(), "127.0.0.1", port)  # type: ignore[attr-defined]
    click.echo(f"Development mailbox listening on 127.0.0.1:{port}; read it at /dev/mailbox.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


# --- retention ----------------------------------------------------------------------------


@retention_cli.command("purge")
@click.option("--json", "as_json", is_flag=True)
def retention_purge(as_json: bool) -> None:
    """Delete expired requests and never-confirmed contacts, truncate old IPs (run daily)."""
    counts = retention.purge()
    text = ", ".join(f"{kind.replace('_', ' ')}: {count}" for kind, count in counts.items())
    _emit(as_json, counts, f"Purged: {text}.")


# --- consent texts ------------------------------------------------------------------------


@consent_cli.command("seed")
def consent_seed() -> None:
    """Publish the built-in consent texts for every language that has none."""
    site = current_app.config["SITE_NAME"]
    if site == config.DEFAULTS["SITE_NAME"] and not current_app.debug:
        # The organisation's name is written into the text people consent to: a placeholder
        # there would make every consent record say "Preference Center".
        _fail("set FLASK_SITE_NAME to your organisation's name first; it is part of the text")
    published = consent.seed_defaults()
    if published:
        click.echo(
            "Published "
            + ", ".join(f"{t.language} v{t.version}" for t in published)
            + " of the built-in consent text."
        )
    else:
        click.echo("Consent texts exist already; nothing published.")


@consent_cli.command("publish")
@click.option("--language", required=True, type=click.Choice(["nl", "fr", "en"]))
@click.option("--file", "path", required=True, type=click.File("r", encoding="utf-8"))
@click.option("--json", "as_json", is_flag=True)
def consent_publish(language: str, path: Any, as_json: bool) -> None:
    """Publish a new version of the signup consent text; earlier records keep theirs."""
    try:
        text = consent.publish(language, path.read())
    except ValueError as exc:
        _fail(str(exc))
    data = {"language": text.language, "version": text.version, "sha256": text.sha256}
    _emit(as_json, data, f"Published {text.language} v{text.version} ({text.sha256[:12]}).")


@consent_cli.command("list")
@click.option("--json", "as_json", is_flag=True)
def consent_list(as_json: bool) -> None:
    """Every published version, oldest first."""
    rows = [
        {
            "language": t.language,
            "version": t.version,
            "published_at": t.published_at.isoformat(),
            "sha256": t.sha256,
            "body": t.body,
        }
        for language in ("nl", "fr", "en")
        for t in consent.history(language)
    ]
    if as_json:
        _emit(True, rows, "")
        return
    for row in rows:
        click.echo(
            f"{row['language']} v{row['version']}  {row['published_at'][:19]}  {row['sha256'][:12]}"
        )


# --- staff accounts -----------------------------------------------------------------------


@users_cli.command("create")
@click.argument("email")
@click.option("--role", required=True, type=click.Choice(["admin", "marketer", "dpo"]))
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--json", "as_json", is_flag=True)
def users_create(email: str, role: str, password_stdin: bool, as_json: bool) -> None:
    """Create a staff account; the password is asked for (never given as an argument)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = accounts.create(email, role, password)
    except accounts.AccountError as exc:
        _fail(str(exc))
    _emit(
        as_json,
        {"email": user.email, "role": user.role.value},
        f"Created {user.role.value} {user.email}.",
    )


@users_cli.command("list")
@click.option("--json", "as_json", is_flag=True)
def users_list(as_json: bool) -> None:
    """Every staff account with its role and state."""
    rows = [
        {"email": u.email, "role": u.role.value, "active": u.active,
         "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None}
        for u in accounts.all_users()
    ]  # fmt: skip
    if as_json:
        _emit(True, rows, "")
        return
    for row in rows:
        state = "active" if row["active"] else "deactivated"
        click.echo(f"{row['email']:<40} {row['role']:<9} {state}")


@users_cli.command("deactivate")
@click.argument("email")
def users_deactivate(email: str) -> None:
    """Sign an account out everywhere and refuse it from now on."""
    try:
        user = accounts.deactivate(email)
    except accounts.AccountError as exc:
        _fail(str(exc))
    click.echo(f"Deactivated {user.email}.")


# --- imports ------------------------------------------------------------------------------


@contacts_cli.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--event", "event_name", required=True, help="Where the contacts were collected.")
@click.option("--event-date", required=True, type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("--collected-by", required=True,
              type=click.Choice(["business-card", "badge-scan", "sheet", "other"]))  # fmt: skip
@click.option("--mapping", help="Columns as field=index, e.g. email=2,first_name=0 (0-based).")
@click.option("--encoding", help="Force the text encoding, e.g. cp1252 or utf-16.")
@click.option("--delimiter", help="Force the delimiter: , ; tab or |.")
@click.option("--sheet", help="The worksheet of an .xlsx file (default: the first).")
@click.option("--language", default="nl", type=click.Choice(["nl", "fr", "en"]),
              help="Language of the permission email when the file gives none.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
def contacts_import(path: str, event_name: str, event_date: Any, collected_by: str,
                    mapping: str | None, encoding: str | None, delimiter: str | None,
                    sheet: str | None, language: str, as_json: bool) -> None:  # fmt: skip
    """Import a contact file (CSV/TSV, .xlsx, .vcf); nobody is subscribed by an import."""
    options: dict[str, Any] = {"encoding": encoding, "sheet": sheet,
                               "delimiter": "\t" if delimiter == "tab" else delimiter}  # fmt: skip
    if mapping:
        try:
            options["mapping"] = {
                field.strip(): int(index)
                for field, index in (part.split("=", 1) for part in mapping.split(","))
            }
        except ValueError:
            _fail("--mapping takes field=index pairs, e.g. email=2,first_name=0")
    try:
        provenance = imports.Provenance.checked(
            event_name, event_date.date(), collected_by, uploaded_by="cli"
        )
    except imports.ProvenanceMissing as exc:
        _fail(str(exc))
    interactive = sys.stderr.isatty() and not as_json

    def progress(rows: int) -> None:
        if interactive:
            click.echo(f"\r{rows:,} rows read", nl=False, err=True)

    try:
        with open(path, "rb") as stream:
            batch = imports.import_contacts(
                stream, filename=path.rsplit("/", 1)[-1], provenance=provenance,
                options=options, language=language, progress=progress,
            )  # fmt: skip
    except readers.ReadError as exc:
        _fail(f"this file cannot be imported ({exc.code}): {exc.detail}")
    if interactive:
        click.echo("", err=True)
    data = {"batch": batch.id, "rows": batch.rows_read, "counts": batch.counts,
            "sha256": batch.file_sha256}  # fmt: skip
    text = f"Imported batch {batch.id}: {batch.rows_read} rows; " + ", ".join(
        f"{k}: {v}" for k, v in sorted(batch.counts.items())
    )
    _emit(as_json, data, text)


@contacts_cli.command("report")
@click.argument("batch_id", type=int)
def contacts_report(batch_id: int) -> None:
    """Print a batch's per-row report as CSV (formula-neutralised)."""
    for chunk in imports.report_csv(batch_id):
        click.echo(chunk, nl=False)


# --- permission campaigns -----------------------------------------------------------------


@repermission_cli.command("send")
@click.argument("batch_id", type=int)
@click.option("--topics", default="", help="Comma-separated topic slugs to ask permission for.")
@click.option("--json", "as_json", is_flag=True)
def repermission_send(batch_id: int, topics: str, as_json: bool) -> None:
    """Queue the permission email for a batch (again safe: nobody is asked twice)."""
    slugs = [t.strip() for t in topics.split(",") if t.strip()]
    try:
        queued = repermission.send(batch_id, slugs, actor="cli")
    except repermission.CampaignError as exc:
        _fail(str(exc))
    _emit(
        as_json,
        {"batch": batch_id, "queued": queued},
        f"Queued {queued} permission emails for batch {batch_id}.",
    )


@repermission_cli.command("remind")
@click.option("--json", "as_json", is_flag=True)
def repermission_remind(as_json: bool) -> None:
    """Send the one reminder of every batch that is due (safe to run daily)."""
    queued = repermission.remind()
    _emit(as_json, {"queued": queued}, f"Queued {queued} reminders.")


@repermission_cli.command("funnel")
@click.argument("batch_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def repermission_funnel(batch_id: int, as_json: bool) -> None:
    """imported, mailed, delivered, bounced, confirmed, refused, purged."""
    try:
        figures = repermission.funnel(batch_id)
    except repermission.CampaignError as exc:
        _fail(str(exc))
    _emit(as_json, figures, ", ".join(f"{k}: {v}" for k, v in figures.items()))

"""``flask api-tokens``, ``flask webhooks`` and ``flask sync``: keeping the mailing list in step."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask.cli import AppGroup

from . import readers
from .services import api_tokens, feed, sync, topics, webhooks

tokens_cli = AppGroup("api-tokens", help="Tokens for the export API (one per mailing list).")
webhooks_cli = AppGroup("webhooks", help="Push the change feed to a URL, signed.")
sync_cli = AppGroup("sync", help="Is the mailing list in step?")
GROUPS = (tokens_cli, webhooks_cli, sync_cli)


def _slugs(topics: str) -> list[str] | None:
    return [t.strip() for t in topics.split(",") if t.strip()] or None


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(2)


# --- API tokens ---------------------------------------------------------------------------


@tokens_cli.command("create")
@click.argument("name")
@click.option("--topics", default="", help="Comma-separated topic slugs (default: every topic).")
def tokens_create(name: str, topics: str) -> None:
    """Create a token and print it once; its last line is the token alone."""
    try:
        token, secret = api_tokens.create(name, _slugs(topics), actor="cli")
    except api_tokens.TokenNameTaken:
        _fail(f"a token named {name!r} exists already")
    except api_tokens.UnknownTopic as exc:
        _fail(f"unknown topic: {exc}")
    except ValueError as exc:
        _fail(str(exc))
    scope = topics or "every topic"
    click.echo(f"Token {token.name!r} for {scope}. It is shown only now; store it safely:")
    click.echo(secret)


@tokens_cli.command("list")
@click.option("--json", "as_json", is_flag=True)
def tokens_list(as_json: bool) -> None:
    """Every token with its scope, last use and position in the feed."""
    slugs = feed.topic_slugs()
    rows = [
        {
            "name": t.name,
            "prefix": t.prefix,
            "topics": [slugs.get(i, str(i)) for i in t.topic_ids] if t.topic_ids else "all",
            "last_used_at": feed.iso(t.last_used_at),
            "cursor": feed.encode_cursor(t.cursor),
            "revoked": t.revoked_at is not None,
        }
        for t in api_tokens.listing()
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        state = "revoked" if row["revoked"] else f"last used {row['last_used_at'] or 'never'}"
        click.echo(f"{row['name']}\t{row['prefix']}…\t{row['topics']}\t{state}")


@tokens_cli.command("revoke")
@click.argument("name")
def tokens_revoke(name: str) -> None:
    """Revoke a token at once: its next request gets 401."""
    if not api_tokens.revoke(name, actor="cli"):
        _fail(f"no active token named {name!r}")
    click.echo(f"Revoked {name}.")


# --- webhooks -----------------------------------------------------------------------------


@webhooks_cli.command("add")
@click.argument("url")
@click.option("--secret", required=True, help="Shared secret for the signature (16+ characters).")
@click.option("--topics", default="", help="Comma-separated topic slugs (default: every topic).")
def webhooks_add(url: str, secret: str, topics: str) -> None:
    """Push the change feed to URL, signed with HMAC-SHA256 (the worker sends)."""
    try:
        hook = webhooks.add(url, secret, api_tokens.topic_ids_for(_slugs(topics)), actor="cli")
    except (webhooks.WebhookError, api_tokens.UnknownTopic) as exc:
        _fail(str(exc))
    click.echo(f"Added webhook {hook.id} for {hook.url}.")


@webhooks_cli.command("list")
@click.option("--json", "as_json", is_flag=True)
def webhooks_list(as_json: bool) -> None:
    """Every webhook, how far it got and its failed deliveries."""
    rows = [
        {
            "id": h.id,
            "url": h.url,
            "cursor": feed.encode_cursor(h.cursor),
            "dead_deliveries": len(webhooks.dead(h.id)),
            "last_error": h.last_error,
        }
        for h in webhooks.listing()
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        click.echo(
            f"{row['id']}\t{row['url']}\tcursor {row['cursor']}\tdead {row['dead_deliveries']}"
            + (f"\t{row['last_error']}" if row["last_error"] else "")
        )


@webhooks_cli.command("remove")
@click.argument("webhook_id", type=int)
def webhooks_remove(webhook_id: int) -> None:
    if not webhooks.remove(webhook_id, actor="cli"):
        _fail(f"no webhook {webhook_id}")
    click.echo(f"Removed webhook {webhook_id}.")


@webhooks_cli.command("retry")
@click.argument("webhook_id", type=int)
def webhooks_retry(webhook_id: int) -> None:
    """Give the failed (dead) deliveries of a webhook new attempts."""
    click.echo(f"{webhooks.retry(webhook_id, actor='cli')} deliveries will be tried again.")


@webhooks_cli.command("replay")
@click.argument("webhook_id", type=int)
@click.option("--from", "cursor", default="", help="A feed cursor (default: the beginning).")
def webhooks_replay(webhook_id: int, cursor: str) -> None:
    """Send the feed again from a cursor."""
    try:
        after = feed.decode_cursor(cursor or None)
    except feed.CursorInvalid:
        _fail("this cursor is not one we handed out")
    if not webhooks.replay(webhook_id, after, actor="cli"):
        _fail(f"no webhook {webhook_id}")
    click.echo(f"Webhook {webhook_id} receives the feed again after {cursor or 'the beginning'}.")


@webhooks_cli.command("dispatch")
def webhooks_dispatch() -> None:
    """Push what is due once (the outbox worker does this all the time)."""
    click.echo(f"{webhooks.dispatch()} deliveries sent.")


# --- sync ---------------------------------------------------------------------------------


@sync_cli.command("status")
@click.option("--json", "as_json", is_flag=True)
def sync_status(as_json: bool) -> None:
    """Each consumer's lag; exits 1 when a removal waited longer than SYNC_LAG_ALERT_HOURS."""
    report = sync.status()
    if as_json:
        click.echo(json.dumps(report))
    else:
        if not report["consumers"]:
            click.echo("No consumers: create an API token or add a webhook.")
        for c in report["consumers"]:
            waited = c["oldest_removal_hours"]
            click.echo(
                f"{'LATE' if c['late'] else 'ok'}\t{c['kind']} {c['name']}\t"
                f"{c['pending_changes']} changes and {c['pending_removals']} removals unread"
                + (f", oldest removal waiting {waited} h" if waited is not None else "")
            )
    if not report["ok"]:
        sys.exit(1)


@sync_cli.command("reconcile")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--topic", default="", help="The list's topic slug (default: any topic).")
@click.option("--json", "as_json", is_flag=True)
def sync_reconcile(path: Path, topic: str, as_json: bool) -> None:
    """List the addresses of the mailing list's export that we have removed (L6).

    Exits 1 when there is any, so a nightly job can alert.
    """
    chosen = None
    if topic:
        try:
            chosen = topics.get(topic)
        except topics.TopicError:
            _fail(f"unknown topic: {topic}")
    try:
        with path.open("rb") as handle:
            checked, findings = sync.reconcile(
                readers.read_rows(handle, filename=path.name), chosen
            )
    except readers.ReadError as exc:
        _fail(f"cannot read {path.name}: {exc}")
    if as_json:
        click.echo(json.dumps({"checked": checked, "findings": [vars(f) for f in findings]}))
    else:
        for finding in findings:
            click.echo(f"{finding.line}\t{finding.email}\t{finding.reason}")
        click.echo(f"{checked} addresses checked; the list must remove {len(findings)}.")
    if findings:
        sys.exit(1)

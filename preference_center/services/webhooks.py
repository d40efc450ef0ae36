"""Webhooks: the change feed pushed to the mailing list, signed, in order, at least once.

The outbox pattern again: a delivery row records *which* page of the feed is due (a range
of change ids), the worker POSTs it and marks it sent; a failure schedules a retry with
exponential backoff and, after WEBHOOK_MAX_ATTEMPTS, leaves the delivery dead, visible to
the admin, and the webhook waits: later pages are not sent past a dead one, so the receiver
never sees a removal before the addition it undoes.

Signature, as Stripe and GitHub do it: ``Preference-Center-Signature: t=<unix time>,
v1=<hex HMAC-SHA256 of "<t>.<body>" with the shared secret>``; the receiver recomputes it and
rejects old timestamps, which stops replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import delete, or_, select, update

from ..extensions import db
from ..models import DeliveryStatus, Webhook, WebhookDelivery, utcnow
from . import audit, feed

SIGNATURE_HEADER = "Preference-Center-Signature"
#: Pages pushed per webhook per worker round, so one busy webhook cannot starve the outbox.
PAGES_PER_ROUND = 20
USER_AGENT = "preference-center-webhooks/1"


class WebhookError(ValueError):
    pass


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """What a receiver does (and what our tests do): check the signature and its age."""
    try:
        parts = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    return hmac.compare_digest(
        sign(secret, timestamp, body), f"t={timestamp},v1={parts.get('v1', '')}"
    )


def check_url(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    allowed = ("https", "http") if current_app.config["WEBHOOK_ALLOW_HTTP"] else ("https",)
    if parts.scheme not in allowed or not parts.hostname or len(url) > 2000:
        raise WebhookError("the URL must be https://host/path")
    if parts.username or parts.password:
        raise WebhookError("put no credentials in the URL; the signature authenticates")
    return url


def add(url: str, secret: str, topic_ids: list[int] | None, actor: str) -> Webhook:
    if len(secret) < 16 or len(secret) > 200:
        raise WebhookError("the secret must have 16 to 200 characters")
    webhook = Webhook(url=check_url(url), secret=secret, topic_ids=topic_ids)
    db.session.add(webhook)
    db.session.flush()
    audit.record(actor, "webhook.add", str(webhook.id), url=webhook.url, topics=topic_ids or "all")
    db.session.commit()
    return webhook


def remove(webhook_id: int, actor: str) -> bool:
    webhook = db.session.get(Webhook, webhook_id)
    if webhook is None:
        return False
    audit.record(actor, "webhook.remove", str(webhook_id), url=webhook.url)
    db.session.delete(webhook)
    db.session.commit()
    return True


def replay(webhook_id: int, after: int, actor: str) -> bool:
    """Push again everything after ``after`` (a feed cursor), dropping what is queued."""
    webhook = db.session.get(Webhook, webhook_id)
    if webhook is None:
        return False
    db.session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id))
    webhook.cursor, webhook.cursor_at, webhook.last_error = after, utcnow(), None
    audit.record(actor, "webhook.replay", str(webhook_id), after=after)
    db.session.commit()
    return True


def retry(webhook_id: int, actor: str) -> int:
    """Give the dead deliveries of a webhook a fresh set of attempts."""
    result = db.session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.webhook_id == webhook_id,
            WebhookDelivery.status == DeliveryStatus.DEAD,
        )
        .values(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=utcnow())
    )
    audit.record(actor, "webhook.retry", str(webhook_id))
    db.session.commit()
    return result.rowcount or 0


def listing() -> list[Webhook]:
    return list(db.session.scalars(select(Webhook).order_by(Webhook.id)))


def dead(webhook_id: int) -> list[WebhookDelivery]:
    return list(
        db.session.scalars(
            select(WebhookDelivery)
            .where(
                WebhookDelivery.webhook_id == webhook_id,
                WebhookDelivery.status == DeliveryStatus.DEAD,
            )
            .order_by(WebhookDelivery.id)
        )
    )


def dispatch(worker: str | None = None) -> int:
    """Push what is due to every webhook; returns the number of successful POSTs."""
    worker = worker or f"webhooks-{uuid.uuid4().hex[:8]}"
    sent = 0
    # Only webhooks behind the feed's end have anything to do: every unsent delivery ends
    # past its webhook's cursor. This runs between every two outbox batches, so an idle
    # webhook costs one query here, not a lease, reads and a release.
    behind = select(Webhook.id).where(Webhook.active, Webhook.cursor < feed.high_water())
    for webhook_id in db.session.scalars(behind).all():
        if not _lease(webhook_id, worker):
            continue
        try:
            sent += _push(webhook_id)
        finally:
            db.session.execute(
                update(Webhook)
                .where(Webhook.id == webhook_id, Webhook.lease_owner == worker)
                .values(lease_owner=None, lease_until=None)
            )
            db.session.commit()
    return sent


def _lease(webhook_id: int, worker: str) -> bool:
    """Take the webhook for this round (compare-and-set: works alike on both databases)."""
    now = utcnow()
    timeout = float(current_app.config["WEBHOOK_TIMEOUT"])
    result = db.session.execute(
        update(Webhook)
        .where(
            Webhook.id == webhook_id,
            or_(Webhook.lease_until.is_(None), Webhook.lease_until < now),
        )
        .values(
            lease_owner=worker,
            lease_until=now + timedelta(seconds=timeout * (PAGES_PER_ROUND + 1) + 60),
        )
    )
    db.session.commit()
    return result.rowcount == 1


def _push(webhook_id: int) -> int:
    config = current_app.config
    sent = 0
    for _ in range(PAGES_PER_ROUND):
        webhook = db.session.get(Webhook, webhook_id, populate_existing=True)
        assert webhook is not None
        queued = db.session.scalar(
            select(WebhookDelivery)
            .where(
                WebhookDelivery.webhook_id == webhook_id,
                WebhookDelivery.status != DeliveryStatus.SENT,
            )
            .order_by(WebhookDelivery.id)
            .limit(1)
        )
        if queued is None:
            page = feed.read_page(
                webhook.cursor, int(config["WEBHOOK_BATCH_SIZE"]), webhook.topic_ids
            )
            if page.last_id == webhook.cursor:
                return sent  # nothing new
            if not page.items:  # only entries this receiver must not see: move past them
                webhook.cursor, webhook.cursor_at = page.last_id, utcnow()
                db.session.commit()
                continue
            queued = WebhookDelivery(
                webhook=webhook, after=webhook.cursor, last_change_id=page.last_id
            )
            db.session.add(queued)
            db.session.commit()
        else:
            page = None  # a retry: rendered again from current data (WebhookDelivery)
        if queued.status is DeliveryStatus.DEAD or queued.next_attempt_at > utcnow():
            return sent
        if not _attempt(webhook, queued, page):
            return sent
        sent += 1
    return sent


def _attempt(webhook: Webhook, delivery: WebhookDelivery, page: feed.Page | None = None) -> bool:
    """POST ``delivery``; ``page`` is its items when they were just read to create it."""
    config = current_app.config
    if page is None:
        page = feed.read_page(
            delivery.after, 1_000_000, webhook.topic_ids, until=delivery.last_change_id
        )
    body = json.dumps(
        {
            "webhook_id": webhook.id,
            "delivery_id": delivery.id,
            "items": page.items,
            "cursor": feed.encode_cursor(delivery.last_change_id),
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    error = _post(webhook, delivery, body, float(config["WEBHOOK_TIMEOUT"]))
    now = utcnow()
    delivery.attempts += 1
    if error is None:
        delivery.status, delivery.delivered_at, delivery.last_error = DeliveryStatus.SENT, now, None
        webhook.cursor, webhook.cursor_at, webhook.last_error = delivery.last_change_id, now, None
        db.session.commit()
        return True
    delivery.last_error = webhook.last_error = error[:500]
    if delivery.attempts >= int(config["WEBHOOK_MAX_ATTEMPTS"]):
        delivery.status = DeliveryStatus.DEAD
        current_app.logger.error(
            "webhook %s: delivery %s is dead: %s", webhook.id, delivery.id, error
        )
    else:
        wait = int(config["WEBHOOK_RETRY_BASE"]) * 2 ** (delivery.attempts - 1)
        delivery.next_attempt_at = now + timedelta(
            seconds=min(wait, int(config["WEBHOOK_RETRY_MAX"]))
        )
    db.session.commit()
    return False


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect would send the signed body somewhere nobody configured.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _post(webhook: Webhook, delivery: WebhookDelivery, body: bytes, timeout: float) -> str | None:
    """POST ``body``; None on a 2xx, else what went wrong (for the admin)."""
    # The scheme was checked when the webhook was added (https, or http when allowed).
    request = urllib.request.Request(  # noqa: S310
        webhook.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(webhook.secret, int(time.time()), body),
            "Preference-Center-Delivery": str(delivery.id),
        },
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    return None if 200 <= status < 300 else f"HTTP {status}"

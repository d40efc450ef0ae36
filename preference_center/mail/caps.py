"""Hourly caps on confirmation and permission emails: a circuit breaker (catalogue C10, H1)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..models import OutboxMessage, OutboxStatus, utcnow

#: Categories whose emails are throttled per hour: (overall cap, per-domain cap) settings.
CAPPED = {
    "confirmation": ("CONFIRMATION_HOURLY_CAP", "CONFIRMATION_HOURLY_CAP_PER_DOMAIN"),
    "repermission": ("REPERMISSION_HOURLY_CAP", "REPERMISSION_HOURLY_CAP_PER_DOMAIN"),
}


@dataclass
class _Cap:
    total_cap: int
    domain_cap: int
    sent_total: int = 0
    sent_by_domain: dict[str, int] = field(default_factory=dict)

    def add(self, address: str) -> None:
        self.sent_total += 1
        domain = _domain(address)
        self.sent_by_domain[domain] = self.sent_by_domain.get(domain, 0) + 1

    def full(self, address: str) -> bool:
        return self.sent_total >= self.total_cap or (
            self.sent_by_domain.get(_domain(address), 0) >= self.domain_cap
        )


@dataclass
class HourlyCaps:
    """Circuit breaker for confirmation and permission emails (catalogue C10, H1).

    A flood of signups from many addresses and IPs passes every per-IP and per-address limit,
    and a 20,000-row event list would otherwise leave in one burst; this caps what actually
    leaves per hour, globally and per recipient domain. Rows over the cap stay in the outbox
    and go out when the hour has room again.
    """

    caps: dict[str, _Cap]
    retry_after: timedelta = timedelta(minutes=5)

    @classmethod
    def load(cls, rows: Sequence[OutboxMessage]) -> HourlyCaps:
        config = current_app.config
        present = {row.category for row in rows} & set(CAPPED)
        caps = {
            category: _Cap(int(config[CAPPED[category][0]]), int(config[CAPPED[category][1]]))
            for category in present
        }
        if caps:
            since = utcnow() - timedelta(hours=1)
            sent = db.session.execute(
                select(OutboxMessage.category, OutboxMessage.to_address).where(
                    OutboxMessage.category.in_(present),
                    OutboxMessage.status == OutboxStatus.SENT,
                    OutboxMessage.sent_at > since,
                )
            )
            for category, address in sent:
                caps[category].add(address)
            db.session.commit()
        return cls(caps)

    def hold(self, row: OutboxMessage) -> bool:
        cap = self.caps.get(row.category)
        if cap is None or not cap.full(row.to_address):
            return False
        current_app.logger.warning(
            "%s email cap reached (%d/h overall, %d/h per domain): holding %s",
            row.category, cap.total_cap, cap.domain_cap, row.id,
        )  # fmt: skip
        return True

    def count(self, row: OutboxMessage) -> None:
        cap = self.caps.get(row.category)
        if cap is not None:
            cap.add(row.to_address)


def _domain(address: str) -> str:
    return address.rpartition("@")[2]

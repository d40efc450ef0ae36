"""The data model: contacts, topics, subscriptions, the consent ledger and the outbox.

Models hold data and small invariants only; they never commit. State changes happen in the
service functions, which write the consent ledger and the outbox in the same transaction.

One module per area (types, contacts, consent, outbox, staff, imports, sync); import from here.
"""

from .consent import LEDGER_SCRUBBABLE, ConsentEvent, ConsentText
from .contacts import (
    Contact,
    EmailChangeRequest,
    LeaveReason,
    PurgeLog,
    SignupRequest,
    SubscriberChange,
    Subscription,
    Suppression,
    Topic,
)
from .imports import AskedMarker, ImportBatch, ImportRow
from .outbox import OutboxMessage
from .staff import AuditEntry, User
from .sync import ApiToken, DeliveryStatus, Webhook, WebhookDelivery
from .types import (
    AddressKind,
    ChangeKind,
    CollectedBy,
    ConsentAction,
    ContactSource,
    ImportOutcome,
    ImportStatus,
    OutboxStatus,
    RequestStatus,
    Role,
    SubscriptionStatus,
    SuppressionReason,
    UTCDateTime,
    utcnow,
)

__all__ = [
    "LEDGER_SCRUBBABLE",
    "AddressKind",
    "ApiToken",
    "AskedMarker",
    "AuditEntry",
    "ChangeKind",
    "CollectedBy",
    "ConsentAction",
    "ConsentEvent",
    "ConsentText",
    "Contact",
    "ContactSource",
    "DeliveryStatus",
    "EmailChangeRequest",
    "ImportBatch",
    "ImportOutcome",
    "ImportRow",
    "ImportStatus",
    "LeaveReason",
    "OutboxMessage",
    "OutboxStatus",
    "PurgeLog",
    "RequestStatus",
    "Role",
    "SignupRequest",
    "SubscriberChange",
    "Subscription",
    "SubscriptionStatus",
    "Suppression",
    "SuppressionReason",
    "Topic",
    "UTCDateTime",
    "User",
    "Webhook",
    "WebhookDelivery",
    "utcnow",
]

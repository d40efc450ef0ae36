"""webhook deliveries indexed by their webhook, as every query reads them

Revision ID: 7c2e9a41d5b3
Revises: 31a364557f6d
Create Date: 2026-11-29 18:05:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '7c2e9a41d5b3'
down_revision = '31a364557f6d'
branch_labels = None
depends_on = None


def upgrade():
    # Every query of the dispatcher and the admin page filters on webhook_id (and orders by
    # id); none used (status, next_attempt_at).
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_delivery_due')
        batch_op.create_index('ix_webhook_delivery_webhook', ['webhook_id', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_delivery_webhook')
        batch_op.create_index('ix_webhook_delivery_due', ['status', 'next_attempt_at'], unique=False)

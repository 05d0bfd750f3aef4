"""Webhooks: subscriptions and the outbox of their notifications.

Revision ID: 0011_webhooks
Revises: 0010_steps_and_arrival
Create Date: 2026-12-03

``webhooks`` holds a tenant's subscriptions; ``webhook_outbox`` one row per trace state
change per subscription, written in the transaction of the change and drained by the
notifier. It looks before it acts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_webhooks"
down_revision = "0010_steps_and_arrival"
branch_labels = None
depends_on = None


def _key(name: str) -> sa.Column[str]:
    return sa.Column(
        name, sa.String().with_variant(sa.String(collation="C"), "postgresql"), nullable=False
    )


def upgrade() -> None:
    tables = sa.inspect(op.get_bind()).get_table_names()
    if "webhooks" not in tables:
        op.create_table(
            "webhooks",
            sa.Column("tenant", sa.String, nullable=False),
            sa.Column("id", sa.String, nullable=False),
            sa.Column("url", sa.Text, nullable=False),
            sa.Column("events", sa.Text, nullable=False),
            sa.Column("dataset", sa.String),
            sa.Column("component", sa.String),
            sa.Column("secret", sa.String, nullable=False),
            sa.Column("created_us", sa.BigInteger, nullable=False),
            sa.Column("failed_us", sa.BigInteger),
            sa.Column("failure", sa.Text),
            sa.PrimaryKeyConstraint("tenant", "id", name="pk_webhooks"),
        )
    if "webhook_outbox" not in tables:
        op.create_table(
            "webhook_outbox",
            sa.Column("id", sa.String, nullable=False),
            sa.Column("tenant", sa.String, nullable=False),
            _key("trace_id"),
            sa.Column("webhook_id", sa.String, nullable=False),
            sa.Column("type", sa.String, nullable=False),
            sa.Column("change_us", sa.BigInteger, nullable=False),
            sa.Column("created_us", sa.BigInteger, nullable=False),
            sa.Column("next_us", sa.BigInteger),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("last_us", sa.BigInteger),
            sa.Column("last_status", sa.Integer),
            sa.Column("last_error", sa.Text),
            sa.Column("delivered_us", sa.BigInteger),
            sa.Column("gave_up_us", sa.BigInteger),
            sa.PrimaryKeyConstraint("id", name="pk_webhook_outbox"),
        )
        op.create_index(
            "ux_webhook_outbox_change",
            "webhook_outbox",
            ["tenant", "trace_id", "type", "change_us", "webhook_id"],
            unique=True,
        )
        op.create_index(
            "ix_webhook_outbox_webhook", "webhook_outbox", ["tenant", "webhook_id", "last_us"]
        )
        op.create_index(
            "ix_webhook_outbox_due",
            "webhook_outbox",
            ["next_us"],
            sqlite_where=sa.text("next_us IS NOT NULL"),
            postgresql_where=sa.text("next_us IS NOT NULL"),
        )


def downgrade() -> None:
    op.drop_table("webhook_outbox")
    op.drop_table("webhooks")

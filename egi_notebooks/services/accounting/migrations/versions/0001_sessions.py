"""sessions and state

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("vmuuid", sa.String(64), nullable=False, unique=True),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("server_name", sa.String(255), nullable=False),
        sa.Column("primary_vo", sa.String(255)),
        sa.Column("flavor", sa.String(255)),
        sa.Column("image", sa.String(1024)),
        sa.Column("cpu_request", sa.Float()),
        sa.Column("memory_request", sa.BigInteger()),
        sa.Column("disk_request", sa.BigInteger()),
        sa.Column("namespace", sa.String(255)),
        sa.Column("pod_name", sa.String(255)),
        sa.Column("start_time", sa.BigInteger(), nullable=False),
        sa.Column("last_seen", sa.BigInteger(), nullable=False),
        sa.Column("end_time", sa.BigInteger()),
        sa.Column("cpu_seconds", sa.Float()),
        sa.Column("memory_peak", sa.BigInteger()),
        sa.Column("network_in", sa.BigInteger()),
        sa.Column("network_out", sa.BigInteger()),
        sa.Column("usage_time", sa.BigInteger()),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sent_version", sa.Integer(), nullable=False),
    )
    op.create_index("ix_sessions_open", "sessions", ["end_time"])
    op.create_index("ix_sessions_start", "sessions", ["start_time"])
    op.create_index("ix_sessions_unsent", "sessions", ["sent_version", "version"])
    op.create_table(
        "state",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(1024), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("state")
    op.drop_table("sessions")

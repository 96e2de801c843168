"""EOSC pushes remembered per day, user, VO and flavor

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eosc_pushes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("vo", sa.String(255), nullable=False),
        sa.Column("flavor", sa.String(255), nullable=False),
        sa.Column("hours", sa.Float(), nullable=False),
        sa.Column("pushed_at", sa.BigInteger(), nullable=False),
        sa.Column("remote_id", sa.String(255)),
        sa.UniqueConstraint("day", "user", "vo", "flavor", name="uq_eosc_push"),
    )


def downgrade() -> None:
    op.drop_table("eosc_pushes")

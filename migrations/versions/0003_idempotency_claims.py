"""idempotency claims: a key is claimed in its own committed row before the work; status_code is
empty while the first request is in flight, request_hash tells a repeat from another request

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 19:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('idempotency_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_hash', sa.String(length=64), nullable=True))
        batch_op.alter_column('status_code', existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    op.execute('DELETE FROM idempotency_records WHERE status_code IS NULL')
    with op.batch_alter_table('idempotency_records', schema=None) as batch_op:
        batch_op.alter_column('status_code', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column('request_hash')

"""Partial index on rejected TR steps, so downsampled metrics can keep every rejection.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_step_metrics_rejected', 'step_metrics', ['run_id', 'step'], unique=False,
                    sqlite_where=sa.text('NOT accepted'), postgresql_where=sa.text('NOT accepted'))


def downgrade() -> None:
    op.drop_index('ix_step_metrics_rejected', table_name='step_metrics')

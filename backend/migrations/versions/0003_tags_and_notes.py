"""Tags and a note per run and per comparison (issue 13).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('runs', 'comparisons'):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('tags', sa.JSON(), nullable=True))
            batch.add_column(sa.Column('note', sa.Text(), nullable=True))


def downgrade() -> None:
    for table in ('runs', 'comparisons'):
        with op.batch_alter_table(table) as batch:
            batch.drop_column('note')
            batch.drop_column('tags')

"""Analyses table: Hessian-structure jobs on finished runs (paper Figure 2 / Appendix D).

Revision ID: 0006
Revises: 0002
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('analyses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_analyses_run_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_analyses')),
    sqlite_autoincrement=True
    )
    op.create_index('ix_analyses_run_id', 'analyses', ['run_id'], unique=False)
    op.create_index('ix_analyses_status_id', 'analyses', ['status', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_analyses_status_id', table_name='analyses')
    op.drop_index('ix_analyses_run_id', table_name='analyses')
    op.drop_table('analyses')

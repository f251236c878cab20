"""Sweeps (issue 9): a sweep's spec and comparisons, and which grid point each tuning run trains.

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sweeps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('comparison_id', sa.Integer(), nullable=False),
    sa.Column('promoted_comparison_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['comparison_id'], ['comparisons.id'], name=op.f('fk_sweeps_comparison_id'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['promoted_comparison_id'], ['comparisons.id'],
                            name=op.f('fk_sweeps_promoted_comparison_id'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sweeps')),
    sqlite_autoincrement=True
    )
    op.create_table('sweep_runs',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('sweep_id', sa.Integer(), nullable=False),
    sa.Column('entry', sa.Integer(), nullable=False),
    sa.Column('point', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_sweep_runs_run_id'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['sweep_id'], ['sweeps.id'], name=op.f('fk_sweep_runs_sweep_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', name=op.f('pk_sweep_runs'))
    )
    op.create_index(op.f('ix_sweep_runs_sweep_id'), 'sweep_runs', ['sweep_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_sweep_runs_sweep_id'), table_name='sweep_runs')
    op.drop_table('sweep_runs')
    op.drop_table('sweeps')

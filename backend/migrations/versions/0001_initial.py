"""Initial schema: comparisons, runs, step metrics (TR trace as columns) with block rollups, evaluations, reconstructions.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('comparisons',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_comparisons')),
    sqlite_autoincrement=True
    )
    op.create_table('runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('comparison_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('optimizer', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=300), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('device', sa.String(length=64), nullable=True),
    sa.Column('info', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('summary', sa.JSON(), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('last_step', sa.BigInteger(), nullable=True),
    sa.Column('last_backprops', sa.BigInteger(), nullable=True),
    sa.Column('last_epoch', sa.Float(), nullable=True),
    sa.Column('last_wall_time', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['comparison_id'], ['comparisons.id'], name=op.f('fk_runs_comparison_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runs')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index('ix_runs_comparison_id', ['comparison_id'], unique=False)
        batch_op.create_index('ix_runs_status_id', ['status', 'id'], unique=False)

    op.create_table('evaluations',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('backprops', sa.BigInteger(), nullable=False),
    sa.Column('epoch', sa.Float(), nullable=False),
    sa.Column('wall_time', sa.Float(), nullable=False),
    sa.Column('train_loss', sa.Float(), nullable=True),
    sa.Column('test_loss', sa.Float(), nullable=True),
    sa.Column('train_accuracy', sa.Float(), nullable=True),
    sa.Column('test_accuracy', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_evaluations_run_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'step', name=op.f('pk_evaluations')),
    sqlite_with_rowid=False
    )
    op.create_table('metric_blocks',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('block', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('first_step', sa.BigInteger(), nullable=False),
    sa.Column('last_step', sa.BigInteger(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('min_step', sa.BigInteger(), nullable=False),
    sa.Column('min_loss', sa.Float(), nullable=True),
    sa.Column('max_step', sa.BigInteger(), nullable=False),
    sa.Column('max_loss', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_metric_blocks_run_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'block', name=op.f('pk_metric_blocks')),
    sqlite_with_rowid=False
    )
    op.create_table('reconstructions',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('step', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('backprops', sa.BigInteger(), nullable=True),
    sa.Column('png', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_reconstructions_run_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'kind', 'step', name=op.f('pk_reconstructions'))
    )
    op.create_table('step_metrics',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('backprops', sa.BigInteger(), nullable=False),
    sa.Column('gradients', sa.BigInteger(), nullable=True),
    sa.Column('hvps', sa.BigInteger(), nullable=True),
    sa.Column('forwards', sa.BigInteger(), nullable=True),
    sa.Column('epoch', sa.Float(), nullable=False),
    sa.Column('wall_time', sa.Float(), nullable=False),
    sa.Column('train_loss', sa.Float(), nullable=True),
    sa.Column('grad_norm', sa.Float(), nullable=True),
    sa.Column('step_norm', sa.Float(), nullable=True),
    sa.Column('radius', sa.Float(), nullable=True),
    sa.Column('new_radius', sa.Float(), nullable=True),
    sa.Column('rho', sa.Float(), nullable=True),
    sa.Column('cg_iterations', sa.Integer(), nullable=True),
    sa.Column('cg_exit', sa.String(length=32), nullable=True),
    sa.Column('accepted', sa.Boolean(), nullable=True),
    sa.Column('pred_decrease', sa.Float(), nullable=True),
    sa.Column('actual_decrease', sa.Float(), nullable=True),
    sa.Column('step_norm_m', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_step_metrics_run_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'step', name=op.f('pk_step_metrics')),
    sqlite_with_rowid=False
    )


def downgrade() -> None:
    op.drop_table('step_metrics')
    op.drop_table('reconstructions')
    op.drop_table('metric_blocks')
    op.drop_table('evaluations')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_status_id')
        batch_op.drop_index('ix_runs_comparison_id')

    op.drop_table('runs')
    op.drop_table('comparisons')

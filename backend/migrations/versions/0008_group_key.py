"""runs.group_key: the group identity of a run (its resolved config minus the seed), backfilled from stored configs.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""
from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs') as batch:
        batch.add_column(sa.Column('group_key', sa.String(length=32), nullable=True))
        batch.create_index('ix_runs_group_key', ['group_key'], unique=False)
    # backfill from each row's stored config (trainer.identity is the one definition of the key)
    from trainer.identity import group_key_of_stored

    conn = op.get_bind()
    runs = sa.table('runs', sa.column('id', sa.Integer), sa.column('config', sa.JSON),
                    sa.column('group_key', sa.String))
    rows = conn.execute(sa.select(runs.c.id, runs.c.config)).all()
    for run_id, config in rows:
        data = json.loads(config) if isinstance(config, str) else (config or {})
        conn.execute(runs.update().where(runs.c.id == run_id).values(group_key=group_key_of_stored(data)))


def downgrade() -> None:
    with op.batch_alter_table('runs') as batch:
        batch.drop_index('ix_runs_group_key')
        batch.drop_column('group_key')

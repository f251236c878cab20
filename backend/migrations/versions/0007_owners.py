"""Owners (issue 18): every run, comparison, sweep and analysis names the user who created it; the audit trail.

Existing rows get the owner ``default_owner`` (TRUSTLAB_DEFAULT_OWNER, default "admin"), passed by
``backend.db.migrate`` in the Alembic config's attributes. The column is added with that value as its server
default (SQLite can add a NOT NULL column only so, without rebuilding the table); on PostgreSQL the default is
dropped afterwards, so a row inserted without an owner fails there as it does in the ORM.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""
from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_TABLES = ('comparisons', 'runs', 'sweeps', 'analyses')


def _default_owner() -> str:
    owner = op.get_context().config.attributes.get('default_owner', 'admin')
    if not isinstance(owner, str) or not re.match(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$', owner):
        raise ValueError(f"Invalid TRUSTLAB_DEFAULT_OWNER {owner!r}: a user name (1-40 letters, digits, _ . -)")
    return owner


def upgrade() -> None:
    owner = _default_owner()
    for table in _TABLES:
        op.add_column(table, sa.Column('owner', sa.String(length=64), nullable=False, server_default=owner))
        if op.get_bind().dialect.name != 'sqlite':
            op.alter_column(table, 'owner', server_default=None)
    op.create_index('ix_comparisons_owner_id', 'comparisons', ['owner', 'id'], unique=False)
    op.create_index('ix_runs_owner_status', 'runs', ['owner', 'status'], unique=False)
    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('object_type', sa.String(length=16), nullable=False),
    sa.Column('object_id', sa.BigInteger(), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events')),
    sqlite_autoincrement=True
    )
    op.create_index('ix_audit_events_actor_id', 'audit_events', ['actor', 'id'], unique=False)
    op.create_index('ix_audit_events_object', 'audit_events', ['object_type', 'object_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_audit_events_object', table_name='audit_events')
    op.drop_index('ix_audit_events_actor_id', table_name='audit_events')
    op.drop_table('audit_events')
    op.drop_index('ix_runs_owner_status', table_name='runs')
    op.drop_index('ix_comparisons_owner_id', table_name='comparisons')
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column('owner')

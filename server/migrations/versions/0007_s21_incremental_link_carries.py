"""link_carries: the scored pairs a run leaves the next, so that it re-links only what changed
(branch s21-incremental)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 17:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('link_carries',
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('left_department', sa.String(length=64), nullable=False),
    sa.Column('right_department', sa.String(length=64), nullable=False),
    sa.Column('blocking', sa.String(length=64), nullable=False),
    sa.Column('floor', sa.Float(), nullable=False),
    sa.Column('bucket_bound', sa.Integer(), nullable=False),
    sa.Column('pairs', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.run_id'], ),
    sa.PrimaryKeyConstraint('run_id', 'left_department', 'right_department')
    )


def downgrade() -> None:
    op.drop_table('link_carries')

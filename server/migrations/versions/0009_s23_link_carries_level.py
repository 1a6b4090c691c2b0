"""link_carries.level: each department pair's pairs are kept from a level near its thresholds, not from
the project's floor (a tenth of all pairs of balanced filters at the floor)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 07:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows kept before this have no level: they were kept at their floor, which is how they are read.
    with op.batch_alter_table('link_carries') as batch:
        batch.add_column(sa.Column('level', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('link_carries') as batch:
        batch.drop_column('level')

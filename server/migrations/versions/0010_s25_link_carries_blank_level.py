"""link_carries.blank_level: the pairs with a blank resident ID are compared and kept on the rest of the
filter from their own class's level, beside the level of the pairs with both IDs (server/pipeline/presence.py)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 14:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows kept before this have none: their blank-ID pairs were scored on the whole filter, so the
    # next run keeps only their pairs with both IDs and compares the blank class anew.
    with op.batch_alter_table('link_carries') as batch:
        batch.add_column(sa.Column('blank_level', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('link_carries') as batch:
        batch.drop_column('blank_level')

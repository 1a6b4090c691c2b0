"""log_signers: the audit key the log is signed with, so that a coordinator with another key is refused

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 17:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('log_signers',
    sa.Column('vkey', sa.String(length=512), nullable=False),
    sa.Column('recorded_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('vkey')
    )


def downgrade() -> None:
    op.drop_table('log_signers')

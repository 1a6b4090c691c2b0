"""records.came_with: a record whose reference the upload before did not hold, so that a superseded
upload need not be kept for the next commit's count of the records that came and went (branch s22-purge)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 21:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('records') as batch:
        batch.add_column(sa.Column('came_with', sa.Integer(), nullable=True))
    # Each department's current upload marked against the upload committed before it, as a commit does now.
    conn = op.get_bind()
    current = conn.execute(sa.text(
        "SELECT u.upload_id, (SELECT b.upload_id FROM uploads b WHERE b.project_id = u.project_id "
        "AND b.department = u.department AND b.upload_id <> u.upload_id AND b.committed_at IS NOT NULL "
        "AND b.committed_at < u.committed_at ORDER BY b.committed_at DESC LIMIT 1) "
        "FROM uploads u WHERE u.state = 'committed'")).all()
    for upload_id, before in current:
        if before is not None:
            conn.execute(sa.text(
                "UPDATE records SET came_with = 1 WHERE upload_id = :u AND NOT EXISTS (SELECT 1 FROM records o "
                "WHERE o.upload_id = :b AND o.ref = records.ref)"), {"u": upload_id, "b": before})


def downgrade() -> None:
    with op.batch_alter_table('records') as batch:
        batch.drop_column('came_with')

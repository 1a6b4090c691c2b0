"""run numbers and owners; coordinator leases

Runs are ordered by a number per project (never by a clock that can step),
and owned by the coordinator instance that executes them; coordinator
instances sharing a PostgreSQL database hold leases (server/ownership.py).
Existing runs are numbered in the order they were created.

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('coordinator_leases',
    sa.Column('instance_id', sa.String(length=32), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('address', sa.String(length=255), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.Column('renewed_at', sa.Float(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('instance_id')
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('number', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('owner', sa.String(length=32), nullable=True))
    runs = sa.table('runs', sa.column('run_id'), sa.column('project_id'), sa.column('created_at'),
                    sa.column('number'))
    conn = op.get_bind()
    counts: dict[str, int] = {}
    for run_id, project_id in conn.execute(sa.select(runs.c.run_id, runs.c.project_id)
                                           .order_by(runs.c.created_at, runs.c.run_id)).all():
        counts[project_id] = counts.get(project_id, 0) + 1
        conn.execute(runs.update().where(runs.c.run_id == run_id).values(number=counts[project_id]))
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_run_number', ['project_id', 'number'])


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_constraint('uq_run_number', type_='unique')
        batch_op.drop_column('owner')
        batch_op.drop_column('number')
    op.drop_table('coordinator_leases')

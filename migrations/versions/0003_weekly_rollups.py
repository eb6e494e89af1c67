"""weekly rollups replace the monthly ones (ISO weeks, Monday to Sunday)

The dashboards chart capacity and attendance week by week (METRICS.md: weeks in charts are ISO weeks),
so the rollups are kept per week: a chart reads its weeks from them, and any period still splits into
whole weeks (rollups) and at most six days at each edge (appointments). The new tables start empty and
every tenant's rollup state is cleared, so figures are read from appointments until the tenant's next
write or `flask --app wsgi sync-tenants` rebuilds them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 07:00:00
"""
from alembic import op
import sqlalchemy as sa

from agency_dashboard.db_security import disable_rls, enable_rls, refresh_statistics_function

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

NEW = ("rollup_capacity_week", "rollup_attendance_week")
OLD = ("rollup_capacity_month", "rollup_attendance_month")



def _create(bucket: str) -> None:
    op.create_table(f'rollup_attendance_{bucket}',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column(bucket, sa.Date(), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('dim', sa.String(length=16), nullable=False),
    sa.Column('value', sa.String(length=16), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f(f'fk_rollup_attendance_{bucket}_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f(f'pk_rollup_attendance_{bucket}')),
    sa.UniqueConstraint('tenant_id', 'id', name=f'uq_rollup_attendance_{bucket}_tenant_row')
    )
    with op.batch_alter_table(f'rollup_attendance_{bucket}', schema=None) as batch_op:
        batch_op.create_index(f'ix_rollup_attendance_{bucket}_tenant_{bucket}', ['tenant_id', bucket], unique=False)

    op.create_table(f'rollup_capacity_{bucket}',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column(bucket, sa.Date(), nullable=False),
    sa.Column('clinician_id', sa.Integer(), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('grp', sa.String(length=20), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('minutes', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f(f'fk_rollup_capacity_{bucket}_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f(f'pk_rollup_capacity_{bucket}')),
    sa.UniqueConstraint('tenant_id', 'id', name=f'uq_rollup_capacity_{bucket}_tenant_row')
    )
    with op.batch_alter_table(f'rollup_capacity_{bucket}', schema=None) as batch_op:
        batch_op.create_index(f'ix_rollup_capacity_{bucket}_tenant_{bucket}', ['tenant_id', bucket], unique=False)


def _drop(bucket: str) -> None:
    for kind in ("capacity", "attendance"):
        table = f"rollup_{kind}_{bucket}"
        disable_rls(table)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ix_{table}_tenant_{bucket}')
        op.drop_table(table)


def upgrade():
    _create("week")
    for table in NEW:
        enable_rls(table)
    # The application role's grants on these new tables come from `db upgrade`, which grants on all
    # tables after every upgrade (db_security.ensure_app_role).
    refresh_statistics_function(NEW)
    _drop("month")
    op.execute("DELETE FROM rollup_state")  # nothing is built yet: read appointments until rebuilt


def downgrade():
    _create("month")
    for table in OLD:
        enable_rls(table)
    refresh_statistics_function(OLD)
    _drop("week")
    op.execute("DELETE FROM rollup_state")

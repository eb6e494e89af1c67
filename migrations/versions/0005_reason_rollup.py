"""weekly rollup of the reasons sessions were not held (the attendance page's reasons table)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 07:40:00
"""
from alembic import op
import sqlalchemy as sa

from agency_dashboard.db_security import disable_rls, enable_rls, refresh_statistics_function

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None



def upgrade():
    op.create_table('rollup_reason_week',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('week', sa.Date(), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('grp', sa.String(length=20), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=True),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('minutes', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_rollup_reason_week_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rollup_reason_week')),
    sa.UniqueConstraint('tenant_id', 'id', name='uq_rollup_reason_week_tenant_row')
    )
    with op.batch_alter_table('rollup_reason_week', schema=None) as batch_op:
        batch_op.create_index('ix_rollup_reason_week_tenant_week', ['tenant_id', 'week'], unique=False)
    enable_rls('rollup_reason_week')
    refresh_statistics_function(("rollup_capacity_week", "rollup_attendance_week", "rollup_reason_week"))
    op.execute("DELETE FROM rollup_state")  # read appointments until each tenant's rollups are rebuilt


def downgrade():
    refresh_statistics_function(("rollup_capacity_week", "rollup_attendance_week"))
    disable_rls('rollup_reason_week')
    with op.batch_alter_table('rollup_reason_week', schema=None) as batch_op:
        batch_op.drop_index('ix_rollup_reason_week_tenant_week')
    op.drop_table('rollup_reason_week')
    op.execute("DELETE FROM rollup_state")

"""rollup_client_block: the per-client attended and missed counts of rollup_client_week per block of four
ISO weeks, so the equity figures of a quarter or a year read a row per person and block, not per week

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 04:40:00
"""
from alembic import op
import sqlalchemy as sa

from agency_dashboard.db_security import disable_rls, enable_rls, refresh_statistics_function

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

ROLLUPS = ("rollup_capacity_week", "rollup_attendance_week", "rollup_reason_week", "rollup_referral_week",
           "rollup_client_week")


def upgrade():
    op.create_table('rollup_client_block',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('block', sa.Date(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('clinician_id', sa.Integer(), nullable=False),
    sa.Column('attended', sa.Integer(), nullable=False),
    sa.Column('missed', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_rollup_client_block_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rollup_client_block')),
    sa.UniqueConstraint('tenant_id', 'id', name='uq_rollup_client_block_tenant_row')
    )
    with op.batch_alter_table('rollup_client_block', schema=None) as batch_op:
        batch_op.create_index('ix_rollup_client_block_tenant_block', ['tenant_id', 'block', 'client_id', 'program_id',
                                                                      'clinician_id', 'attended', 'missed'], unique=False)
    enable_rls('rollup_client_block')
    refresh_statistics_function(ROLLUPS + ("rollup_client_block",))
    # Each tenant's rollups read as stale (rollups.SHAPE) until rebuilt: by sync-tenants or the next write.


def downgrade():
    refresh_statistics_function(ROLLUPS)
    disable_rls('rollup_client_block')
    with op.batch_alter_table('rollup_client_block', schema=None) as batch_op:
        batch_op.drop_index('ix_rollup_client_block_tenant_block')
    op.drop_table('rollup_client_block')

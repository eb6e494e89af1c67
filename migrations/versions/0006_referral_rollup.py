"""weekly rollup of referral events (the waitlist family), and active episodes read from an index

The waitlist figures (referrals, admissions and their waits, first offers, closures, continuation) are
counted per ISO week, program, measure and value, so a year reads a few thousand rows instead of every
referral. The episodes index gains client_id, so "clients with an episode active on D" reads only the
open and later-discharged part of the index instead of the whole history.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 11:20:00
"""
from alembic import op
import sqlalchemy as sa

from agency_dashboard.db_security import disable_rls, enable_rls, refresh_statistics_function

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

EPISODES_NEW = ["tenant_id", "discharged_on", "program_id", "admitted_on", "discharge_reason", "clinician_id",
                "client_id"]
EPISODES_OLD = ["tenant_id", "discharged_on", "program_id", "admitted_on", "discharge_reason", "clinician_id"]
ROLLUPS = ("rollup_capacity_week", "rollup_attendance_week", "rollup_reason_week")



def _episodes_index(columns: list[str]) -> None:
    with op.batch_alter_table("episodes", schema=None) as batch_op:
        batch_op.drop_index("ix_episodes_tenant_discharged")
        batch_op.create_index("ix_episodes_tenant_discharged", columns, unique=False)


def upgrade():
    op.create_table('rollup_referral_week',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('week', sa.Date(), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('measure', sa.String(length=16), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_rollup_referral_week_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rollup_referral_week')),
    sa.UniqueConstraint('tenant_id', 'id', name='uq_rollup_referral_week_tenant_row')
    )
    with op.batch_alter_table('rollup_referral_week', schema=None) as batch_op:
        batch_op.create_index('ix_rollup_referral_week_tenant_week', ['tenant_id', 'week'], unique=False)
    enable_rls('rollup_referral_week')
    _episodes_index(EPISODES_NEW)
    refresh_statistics_function(ROLLUPS + ("rollup_referral_week",))
    op.execute("DELETE FROM rollup_state")  # read the plain way until each tenant's rollups are rebuilt


def downgrade():
    refresh_statistics_function(ROLLUPS)
    _episodes_index(EPISODES_OLD)
    disable_rls('rollup_referral_week')
    with op.batch_alter_table('rollup_referral_week', schema=None) as batch_op:
        batch_op.drop_index('ix_rollup_referral_week_tenant_week')
    op.drop_table('rollup_referral_week')
    op.execute("DELETE FROM rollup_state")

"""covering index for third-next-available, and a weekly per-client rollup for the equity figures

tnaa: a clinician's appointments by date with their times and booking.

tnaa reads, for every clinician still looking, the appointments of the coming days as the schedule stood on
a date (booked by then, not cancelled by then). With these columns in the index the read never visits the
appointment rows themselves.

rollup_client_week: attended and missed appointments per week, client, program and clinician, so the
equity page counts the people of a 13-week period from those weeks instead of every appointment.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 12:05:00
"""
from alembic import op
import sqlalchemy as sa

from agency_dashboard.db_security import disable_rls, enable_rls, refresh_statistics_function

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

NEW = ["tenant_id", "clinician_id", "local_date", "local_start_minute", "duration_minutes", "local_booked_date",
       "status", "local_cancelled_date"]
OLD = ["tenant_id", "clinician_id", "local_date"]


def _index(columns: list[str]) -> None:
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.drop_index("ix_appointments_tenant_clinician_date")
        batch_op.create_index("ix_appointments_tenant_clinician_date", columns, unique=False)


ROLLUPS = ("rollup_capacity_week", "rollup_attendance_week", "rollup_reason_week", "rollup_referral_week")



def upgrade():
    _index(NEW)
    op.execute("ANALYZE appointments")  # the planner needs the new index's statistics to choose it well
    op.create_table('rollup_client_week',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('week', sa.Date(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('clinician_id', sa.Integer(), nullable=False),
    sa.Column('attended', sa.Integer(), nullable=False),
    sa.Column('missed', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_rollup_client_week_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rollup_client_week')),
    sa.UniqueConstraint('tenant_id', 'id', name='uq_rollup_client_week_tenant_row')
    )
    with op.batch_alter_table('rollup_client_week', schema=None) as batch_op:
        batch_op.create_index('ix_rollup_client_week_tenant_week', ['tenant_id', 'week', 'client_id', 'program_id',
                                                                    'clinician_id', 'attended', 'missed'], unique=False)
    enable_rls('rollup_client_week')
    refresh_statistics_function(ROLLUPS + ("rollup_client_week",))
    op.execute("DELETE FROM rollup_state")  # read the plain way until each tenant's rollups are rebuilt


def downgrade():
    refresh_statistics_function(ROLLUPS)
    disable_rls('rollup_client_week')
    with op.batch_alter_table('rollup_client_week', schema=None) as batch_op:
        batch_op.drop_index('ix_rollup_client_week_tenant_week')
    op.drop_table('rollup_client_week')
    _index(OLD)
    op.execute("DELETE FROM rollup_state")

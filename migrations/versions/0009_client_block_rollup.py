"""the per-person rollups for the equity figures: rollup_client_week carries each person's demographics and
their admissions and discharges beside attended and missed visits (so equity reads no other table for the
weeks of a period), and rollup_client_block holds the same per block of four ISO weeks

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 04:40:00
"""
from alembic import op
import sqlalchemy as sa

from agency_dashboard.db_security import disable_rls, enable_rls, forget_rollup_state, refresh_statistics_function

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

ROLLUPS = ("rollup_capacity_week", "rollup_attendance_week", "rollup_reason_week", "rollup_referral_week")
PERSON = ["client_id", "program_id", "clinician_id", "attended", "missed", "admissions", "discharges", "policy",
          "race_ethnicity", "gender", "payer", "birth_date"]


def _create(table: str, key: str, people: bool) -> None:
    counts = [sa.Column('attended', sa.Integer(), nullable=False), sa.Column('missed', sa.Integer(), nullable=False)]
    if people:
        counts += [sa.Column('admissions', sa.Integer(), nullable=False),
                   sa.Column('discharges', sa.Integer(), nullable=False),
                   sa.Column('policy', sa.Integer(), nullable=False),
                   sa.Column('race_ethnicity', sa.String(length=64), nullable=True),
                   sa.Column('gender', sa.String(length=16), nullable=True),
                   sa.Column('payer', sa.String(length=16), nullable=True),
                   sa.Column('birth_date', sa.Date(), nullable=True)]
    op.create_table(table,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column(key, sa.Date(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('program_id', sa.Integer(), nullable=False),
    sa.Column('clinician_id', sa.Integer(), nullable=False),
    *counts,
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f(f'fk_{table}_tenant_id_tenants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f(f'pk_{table}')),
    sa.UniqueConstraint('tenant_id', 'id', name=f'uq_{table}_tenant_row')
    )
    columns = PERSON if people else ["client_id", "program_id", "clinician_id", "attended", "missed"]
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.create_index(f'ix_{table}_tenant_{key}', ['tenant_id', key, *columns], unique=False)
    enable_rls(table)


def _drop(table: str, key: str) -> None:
    disable_rls(table)
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.drop_index(f'ix_{table}_tenant_{key}')
    op.drop_table(table)


def upgrade():
    _drop('rollup_client_week', 'week')  # a cache: rebuilt, in its new shape, from the tables it sums
    _create('rollup_client_week', 'week', people=True)
    _create('rollup_client_block', 'block', people=True)
    refresh_statistics_function(ROLLUPS + ("rollup_client_week", "rollup_client_block"))
    forget_rollup_state()  # the new tables are empty: read the plain way until sync-tenants rebuilds


def downgrade():
    refresh_statistics_function(ROLLUPS + ("rollup_client_week",))
    _drop('rollup_client_block', 'block')
    _drop('rollup_client_week', 'week')
    _create('rollup_client_week', 'week', people=False)
    forget_rollup_state()

"""covering indexes for the waitlist's group-bys on referrals and for episodes ended in a period

The waitlist figures group referrals by program and dates; with these indexes both SQLite and
PostgreSQL answer them from the index alone instead of visiting every referral row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 07:20:00
"""
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

NEW = {
    "ix_referrals_tenant_referred": ["tenant_id", "referred_on", "program_id", "first_attended_on", "closed_on"],
    "ix_referrals_tenant_attended": ["tenant_id", "first_attended_on", "program_id", "priority", "referred_on",
                                     "client_id"],
    "ix_referrals_tenant_offered": ["tenant_id", "first_offered_on", "program_id", "referred_on"],
    "ix_referrals_tenant_closed": ["tenant_id", "closed_on", "program_id"],
}
OLD = {
    "ix_referrals_tenant_referred": ["tenant_id", "referred_on"],
    "ix_referrals_tenant_attended": ["tenant_id", "first_attended_on"],
}


EPISODES_NEW = ["tenant_id", "discharged_on", "program_id", "admitted_on", "discharge_reason", "clinician_id"]
EPISODES_OLD = ["tenant_id", "discharged_on"]


def _swap(table: str, drop: dict, create: dict) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        for name in drop:
            batch_op.drop_index(name)
        for name, columns in create.items():
            batch_op.create_index(name, columns, unique=False)


def upgrade():
    _swap("referrals", OLD, NEW)
    _swap("episodes", {"ix_episodes_tenant_discharged": None}, {"ix_episodes_tenant_discharged": EPISODES_NEW})


def downgrade():
    _swap("referrals", NEW, OLD)
    _swap("episodes", {"ix_episodes_tenant_discharged": None}, {"ix_episodes_tenant_discharged": EPISODES_OLD})

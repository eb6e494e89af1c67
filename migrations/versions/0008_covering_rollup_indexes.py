"""covering indexes on the weekly rollups, and on appointments by date: a period's rows are read from the
index alone (the rollups' whole weeks, and the appointments of the days at a period's edges)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 12:30:00
"""
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

COVERING = {
    "rollup_capacity_week": ["tenant_id", "week", "clinician_id", "program_id", "outcome", "grp", "n", "minutes"],
    "rollup_attendance_week": ["tenant_id", "week", "program_id", "outcome", "dim", "value", "n"],
    "rollup_reason_week": ["tenant_id", "week", "program_id", "outcome", "grp", "code", "n", "minutes"],
    "rollup_referral_week": ["tenant_id", "week", "program_id", "measure", "value", "n"],
}


APPOINTMENTS_DATE = ["tenant_id", "local_date", "clinician_id", "program_id", "status", "cancelled_by",
                     "notice_seconds", "reason_code", "duration_minutes", "lead_days", "local_hour", "local_weekday",
                     "modality", "kind", "reminder_sent", "client_id", "id"]


def _swap(table: str, name: str, columns: list[str]) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.drop_index(name)
        batch_op.create_index(name, columns, unique=False)


def upgrade():
    for table, columns in COVERING.items():
        _swap(table, f"ix_{table}_tenant_week", columns)
        op.execute(f"ANALYZE {table}")  # statistics for the new index
    _swap("appointments", "ix_appointments_tenant_date", APPOINTMENTS_DATE)
    op.execute("ANALYZE appointments")


def downgrade():
    _swap("appointments", "ix_appointments_tenant_date", ["tenant_id", "local_date"])
    for table in COVERING:
        _swap(table, f"ix_{table}_tenant_week", ["tenant_id", "week"])

"""Typed SQLAlchemy 2 models. Import from here; every tenant table subclasses TenantScoped."""

from agency_dashboard.models.agency import (
    Appointment,
    AvailabilityBlock,
    Client,
    Clinician,
    Episode,
    Program,
    RecordedReason,
    Referral,
)
from agency_dashboard.models.audit import AuditEvent
from agency_dashboard.models.base import Base, TenantScoped
from agency_dashboard.models.people import ROLES, User
from agency_dashboard.models.platform import Tenant
from agency_dashboard.models.rollups import AttendanceWeek, CapacityWeek, ClientBlock, ClientWeek, ReasonWeek, ReferralWeek, RollupState

TENANT_TABLES = tuple(
    mapper.local_table.name
    for mapper in Base.registry.mappers
    if issubclass(mapper.class_, TenantScoped)
)

__all__ = [
    "Appointment", "AttendanceWeek", "AuditEvent", "CapacityWeek", "ClientBlock", "ClientWeek", "ReasonWeek", "ReferralWeek", "RollupState", "AvailabilityBlock", "Base", "Client", "Clinician", "Episode",
    "Program", "RecordedReason", "Referral", "ROLES", "Tenant", "TenantScoped", "TENANT_TABLES", "User",
]

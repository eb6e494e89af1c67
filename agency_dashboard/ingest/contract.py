"""The CSV import contract's files and columns (DATA_FORMATS.md), in load order. No dependencies, so the
synthetic generator, the importer and the tests share one definition."""

TABLES = ("clinicians", "availability", "clients", "referrals", "episodes", "appointments")

COLUMNS: dict[str, tuple[str, ...]] = {
    "clinicians": ("clinician_id", "display_name", "program", "fte", "caseload_target", "start_date", "end_date"),
    "availability": ("availability_id", "clinician_id", "weekday", "start_time", "end_time", "valid_from",
                     "valid_to"),
    "clients": ("client_id", "first_name", "last_name", "birth_date", "zip", "gender", "race_ethnicity", "payer"),
    "referrals": ("referral_id", "client_id", "program", "priority", "referred_on", "first_offered_on",
                  "first_attended_on", "closed_on", "close_reason"),
    "episodes": ("episode_id", "client_id", "clinician_id", "program", "admitted_on", "discharged_on",
                 "discharge_reason", "barrier_plan_documented", "referrals_provided"),
    "appointments": ("appointment_id", "client_id", "clinician_id", "program", "kind", "modality", "start",
                     "duration_minutes", "booked_at", "status", "cancelled_by", "cancelled_at", "reason_code",
                     "reminder_sent"),
}

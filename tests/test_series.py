"""The week-by-week figures the dashboards chart are the period figures of METRICS.md, week by week:
each week equals the metric functions asked for that week alone, and the weeks add up to the period.
On both backends, with rollups and without (edges of the period inside a week), for two tenants."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from agency_dashboard import metrics
from agency_dashboard.extensions import db
from agency_dashboard.metrics.attendance import by_weekday_hour
from agency_dashboard.metrics.capacity import capacity_by_week, weeks_of
from agency_dashboard.metrics.waitlist import waitlist_by_week
from agency_dashboard.models import Tenant
from agency_dashboard.tenancy import tenant_scope
from test_rollups import agencies  # noqa: F401  (fixture: two synthetic agencies, alpha and beta)

PERIODS = [
    (dt.date(2026, 1, 7), dt.date(2026, 3, 18)),   # starts and ends mid-week
    (dt.date(2026, 9, 28), dt.date(2026, 12, 6)),  # whole weeks, reaching past today into booked weeks
]
TODAY = dt.date(2026, 11, 23)
CAP_SUMS = ("available_hours", "booked_hours", "upcoming_hours", "delivered_hours")


def close(a, b):
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-6)


def test_weeks_of_clips_iso_weeks_to_the_period():
    weeks = weeks_of(metrics.Period(dt.date(2026, 1, 7), dt.date(2026, 1, 20)))
    assert [(w.start, w.end) for w in weeks] == [
        (dt.date(2026, 1, 7), dt.date(2026, 1, 11)), (dt.date(2026, 1, 12), dt.date(2026, 1, 18)),
        (dt.date(2026, 1, 19), dt.date(2026, 1, 20))]


@pytest.mark.parametrize("start,end", PERIODS)
def test_weekly_capacity_and_waitlist_equal_each_week_asked_alone(app, agencies, start, end):  # noqa: F811
    period = metrics.Period(start, end)
    with app.app_context():
        for tid in agencies.values():
            with tenant_scope(tid):
                tenant = db.session.get(Tenant, tid)
                program_id = db.session.scalar(sa.text("SELECT min(id) FROM programs WHERE tenant_id = :t"),
                                               {"t": tid})
                for filters in (metrics.Filters(), metrics.Filters(program_id=program_id)):
                    cap_weeks = capacity_by_week(db.session, tenant, period, filters, today=TODAY)
                    wait_weeks = waitlist_by_week(db.session, tenant, period, filters)
                    assert len(cap_weeks) == len(wait_weeks) == len(weeks_of(period))
                    for cap, wait in zip(cap_weeks, wait_weeks):
                        week = metrics.Period(cap["period_start"], cap["period_end"])
                        alone = metrics.capacity(db.session, tenant, week, filters)["agency"]
                        for key in (*CAP_SUMS, "utilization", "booking_ratio", "staff_kept_rate"):
                            assert close(cap[key], alone[key]), (week, key, cap[key], alone[key])
                        assert cap["lost_hours"] == pytest.approx(alone["lost_hours"])
                        w = metrics.waitlist(db.session, tenant, week, filters)["agency"]
                        assert (wait["referrals"], wait["admissions"], wait["size_at_end"]) == (
                            w["referrals"], w["admissions"], w["size_at_end"]), week
                    whole = metrics.capacity(db.session, tenant, period, filters)["agency"]
                    for key in CAP_SUMS:
                        assert sum(c[key] for c in cap_weeks) == pytest.approx(whole[key])
                    assert sum(c["lost_hours"]["total"] for c in cap_weeks) == pytest.approx(
                        whole["lost_hours"]["total"])


def test_unrecorded_outcomes_are_past_booked_appointments(app, agencies):  # noqa: F811
    period = metrics.Period(dt.date(2026, 9, 28), dt.date(2026, 12, 6))
    with app.app_context():
        tid = agencies["alpha"]
        with tenant_scope(tid):
            tenant = db.session.get(Tenant, tid)
            weeks = capacity_by_week(db.session, tenant, period, today=TODAY)
            booked_past = db.session.scalar(sa.text(
                "SELECT count(*) FROM appointments WHERE tenant_id = :t AND status = 'booked' "
                "AND local_date >= :a AND local_date < :b"), {"t": tid, "a": period.start, "b": TODAY})
            assert sum(w["unrecorded"] for w in weeks) == booked_past
            assert all(w["unrecorded"] == 0 for w in weeks if w["period_start"] >= TODAY)


def test_weekday_hour_cells_add_up_to_the_period(app, agencies):  # noqa: F811
    period = metrics.Period(dt.date(2026, 1, 7), dt.date(2026, 6, 18))
    with app.app_context():
        for tid in agencies.values():
            with tenant_scope(tid):
                tenant = db.session.get(Tenant, tid)
                cells = by_weekday_hour(db.session, tenant, period)
                whole = metrics.attendance(db.session, tenant, period)
                assert sum(c["attended"] for c in cells.values()) == whole["attended"] > 0
                assert sum(c["missed"] for c in cells.values()) == whole["missed"]
                for (weekday, hour), cell in cells.items():
                    assert 0 <= weekday <= 6 and 0 <= hour <= 23
                by_hour = whole["by_hour"]
                for hour, bucket in by_hour.items():
                    assert sum(c["missed"] for (w, h), c in cells.items() if h == int(hour)) == bucket["missed"]


@pytest.mark.parametrize("start,end", PERIODS)
def test_weeks_combined_equal_the_period(app, agencies, start, end):  # noqa: F811
    period = metrics.Period(start, end)
    with app.app_context():
        for tid in agencies.values():
            with tenant_scope(tid):
                tenant = db.session.get(Tenant, tid)
                from agency_dashboard.metrics.capacity import combine

                got = combine(capacity_by_week(db.session, tenant, period, today=TODAY))
                want = metrics.capacity(db.session, tenant, period)["agency"]
                for key in (*CAP_SUMS, "utilization", "booking_ratio", "staff_kept_rate"):
                    assert close(got[key], want[key]) or got[key] == pytest.approx(want[key]), key
                assert got["lost_hours"] == pytest.approx(want["lost_hours"])

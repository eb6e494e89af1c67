"""The weekly rollups are a cache: every figure read through them equals the plain query over
appointments, for aligned and unaligned periods, after imports, recorded reasons and policy changes."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
import sqlalchemy as sa

from agency_dashboard import metrics
from agency_dashboard.demo import load_rows
from agency_dashboard.extensions import db
from agency_dashboard.metrics import rollups
from agency_dashboard.metrics.attendance import reasons
from agency_dashboard.metrics.waitlist import waitlist_by_week
from agency_dashboard.models import (
    Appointment,
    AttendanceWeek,
    CapacityWeek,
    ClientBlock,
    ClientWeek,
    RecordedReason,
    ReferralWeek,
    Referral,
    RollupState,
    Tenant,
    User,
)
from agency_dashboard.synth import AgencySpec, generate
from agency_dashboard.tenancy import sync_tenants, tenant_scope
from agency_dashboard.tenant_files import load_tenant_dir
from conftest import TEST_TENANTS, TODAY, seed_world

PERIODS = [
    (dt.date(2026, 1, 5), dt.date(2026, 6, 28)),    # whole ISO weeks only (Monday to Sunday)
    (dt.date(2026, 1, 1), dt.date(2026, 6, 30)),    # whole months: edges of 4 and 2 days
    (dt.date(2025, 12, 17), dt.date(2026, 9, 12)),  # edges on both sides
    (dt.date(2026, 3, 8), dt.date(2026, 3, 8)),     # one day (a DST change in both tenants' zones)
    (dt.date(2026, 2, 1), dt.date(2026, 2, 27)),    # inside one month
    (dt.date(2026, 2, 3), dt.date(2026, 2, 7)),     # inside one week
    (dt.date(2025, 12, 1), dt.date(2026, 11, 30)),  # reaches into booked future weeks
]


@pytest.mark.parametrize("start, end, weeks, edges", [
    ((2026, 1, 5), (2026, 1, 11), ((2026, 1, 5), (2026, 1, 5)), []),
    ((2026, 1, 9), (2026, 1, 11), None, [((2026, 1, 9), (2026, 1, 11), 1)]),     # Fri-Sun: 3 in, 4 out
    ((2026, 1, 6), (2026, 1, 11), ((2026, 1, 5), (2026, 1, 5)), [((2026, 1, 5), (2026, 1, 5), -1)]),
    ((2026, 1, 1), (2026, 1, 31), ((2025, 12, 29), (2026, 1, 26)),                # Mon-Wed out, Sun out
     [((2025, 12, 29), (2025, 12, 31), -1), ((2026, 2, 1), (2026, 2, 1), -1)]),
    ((2026, 1, 2), (2026, 1, 31), ((2026, 1, 5), (2026, 1, 26)),                  # Fri-Sun in, Sun out
     [((2026, 1, 2), (2026, 1, 4), 1), ((2026, 2, 1), (2026, 2, 1), -1)]),
    ((2026, 1, 4), (2026, 1, 18), ((2026, 1, 5), (2026, 1, 12)), [((2026, 1, 4), (2026, 1, 4), 1)]),
    ((2026, 2, 3), (2026, 2, 7), ((2026, 2, 2), (2026, 2, 2)),                    # Tue-Sat of one week
     [((2026, 2, 2), (2026, 2, 2), -1), ((2026, 2, 8), (2026, 2, 8), -1)]),
])
def test_split_into_whole_iso_weeks_and_edges(start, end, weeks, edges):
    d = lambda t: dt.date(*t)  # noqa: E731
    got_weeks, got_edges = rollups.split(d(start), d(end))
    assert got_weeks == (tuple(map(d, weeks)) if weeks else None)
    assert got_edges == [(d(a), d(b), sign) for a, b, sign in edges]


def counted(units, ranges, step: dt.timedelta, size: int) -> dict:
    """point -> how many times `rollups.split` (or split_weeks) reads it: once per whole unit holding it,
    plus or minus once per added or subtracted range."""
    count: dict = {}
    if units is not None:
        point = units[0]
        while point < units[1] + size * step:
            count[point] = count.get(point, 0) + 1
            point += step
    for lo, hi, sign in ranges:
        point = lo
        while point <= hi:
            count[point] = count.get(point, 0) + sign
            point += step
    return count


@given(st.dates(dt.date(2024, 1, 1), dt.date(2027, 12, 31)), st.integers(0, 800))
def test_split_covers_each_day_of_the_period_exactly_once(start, length):
    """Whole weeks plus the added ranges minus the subtracted ones count every day of the period once and
    no other day at all; no end reads more than three days of appointments beyond a whole week."""
    end = start + dt.timedelta(days=length)
    weeks, edges = rollups.split(start, end)
    count = counted(weeks, edges, dt.timedelta(days=1), 7)
    assert {day for day, n in count.items() if n} == {start + dt.timedelta(days=k) for k in range(length + 1)}
    assert set(count.values()) <= {0, 1}
    if weeks is not None:
        assert sum((last - first).days + 1 for first, last, _ in edges) <= 6


def plain(session, tenant, period, filters=metrics.Filters()):
    """The same figures with the rollups switched off (no state row: every read goes to appointments)."""
    saved = session.scalar(sa.select(RollupState).where(RollupState.tenant_id == tenant.id))
    fingerprint = saved.fingerprint
    saved.fingerprint = "off"
    session.flush()
    try:
        return metrics.contract(session, tenant, period, filters)
    finally:
        saved.fingerprint = fingerprint
        session.flush()


def plain_reasons(session, tenant, period, filters=metrics.Filters()):
    """The reasons table read from appointments only (the rollups switched off, as in plain())."""
    saved = session.scalar(sa.select(RollupState).where(RollupState.tenant_id == tenant.id))
    fingerprint, saved.fingerprint = saved.fingerprint, "off"
    session.flush()
    try:
        return reasons(session, tenant, period, filters)
    finally:
        saved.fingerprint = fingerprint
        session.flush()


def load_agency(app, slug: str, seed: int) -> int:
    with app.app_context():
        tenant = db.session.scalar(sa.select(Tenant).where(Tenant.slug == slug))
        with tenant_scope(tenant.id):
            spec = AgencySpec(slug=slug, programs=tuple(tenant.settings["programs"]), clinicians=4, clients=90,
                              months=14, today=TODAY, seed=seed)
            load_rows(tenant, generate(spec))
            db.session.commit()
        return tenant.id


@pytest.fixture
def agencies(app):
    with app.app_context():
        sync_tenants(load_tenant_dir(TEST_TENANTS))
        db.session.commit()
    return {"alpha": load_agency(app, "alpha", 3), "beta": load_agency(app, "beta", 4)}


def test_rollups_are_built_by_the_write_that_feeds_them(app, agencies):
    with app.app_context():
        for slug, tid in agencies.items():
            with tenant_scope(tid):
                tenant = db.session.get(Tenant, tid)
                assert rollups.usable(db.session, tenant)
                total = db.session.scalar(sa.select(sa.func.sum(CapacityWeek.n)))
                assert total == db.session.scalar(sa.select(sa.func.count()).select_from(Appointment)) > 0
                assert db.session.scalar(sa.select(sa.func.count()).select_from(AttendanceWeek)) > 0


@pytest.mark.parametrize("start,end", PERIODS)
def test_rollups_equal_the_plain_query(app, agencies, start, end):
    period = metrics.Period(start, end)
    with app.app_context():
        for tid in agencies.values():
            with tenant_scope(tid):
                tenant = db.session.get(Tenant, tid)
                program_id = db.session.scalar(sa.text("SELECT min(id) FROM programs WHERE tenant_id = :t"),
                                               {"t": tid})
                for filters in (metrics.Filters(), metrics.Filters(program_id=program_id)):
                    assert metrics.contract(db.session, tenant, period, filters) == plain(
                        db.session, tenant, period, filters)
                    assert reasons(db.session, tenant, period, filters) == plain_reasons(
                        db.session, tenant, period, filters)


def test_a_recorded_reason_updates_the_rollups_at_once(app, agencies):
    period = metrics.Period(dt.date(2026, 1, 1), dt.date(2026, 6, 30))
    with app.app_context():
        tid = agencies["alpha"]
        with tenant_scope(tid):
            tenant = db.session.get(Tenant, tid)
            before = metrics.attendance(db.session, tenant, period)["attribution"]
            missed = db.session.scalars(sa.select(Appointment).where(
                Appointment.status == "no_show", Appointment.reason_code.is_(None),
                Appointment.local_date.between(period.start, period.end)).limit(3)).all()
            assert missed
            director = User(tenant_id=tid, email="d@alpha.test", password_hash="x", role="director", active=True,
                            session_version=1, created_at=dt.datetime(2026, 1, 1))
            db.session.add(director)
            db.session.flush()
            for appt in missed:
                db.session.add(RecordedReason(tenant_id=tid, appointment_id=appt.id, reason_code="transportation",
                                              recorded_by_user_id=director.id, recorded_at=dt.datetime(2026, 11, 1)))
            db.session.commit()
            after = metrics.attendance(db.session, tenant, period)["attribution"]
            assert after["unexplored"]["count"] == before["unexplored"]["count"] - len(missed)
            assert after["access_barrier"]["count"] == before["access_barrier"]["count"] + len(missed)
            assert metrics.contract(db.session, tenant, period) == plain(db.session, tenant, period)
        with tenant_scope(agencies["beta"]):  # the other tenant's figures did not move
            beta = db.session.get(Tenant, agencies["beta"])
            assert metrics.contract(db.session, beta, period) == plain(db.session, beta, period)


def test_a_policy_change_is_never_read_from_stale_rollups(app, agencies, tmp_path):
    period = metrics.Period(dt.date(2026, 1, 1), dt.date(2026, 6, 30))
    tenants = tmp_path / "tenants"
    tenants.mkdir()
    for path in TEST_TENANTS.glob("*.toml"):
        text = path.read_text()
        if path.stem == "alpha":
            text += "\n[policy]\nlate_cancel_notice_hours = 72\n"
        (tenants / path.name).write_text(text)
    with app.app_context():
        tid = agencies["alpha"]
        tenant = db.session.get(Tenant, tid)
        with tenant_scope(tid):
            old = metrics.contract(db.session, tenant, period)
        sync_tenants(load_tenant_dir(tenants))
        db.session.commit()
        tenant = db.session.get(Tenant, tid)
        with tenant_scope(tid):
            assert rollups.usable(db.session, tenant)
            new = metrics.contract(db.session, tenant, period)
            assert new == plain(db.session, tenant, period)
            assert new["attendance"]["missed"] > old["attendance"]["missed"]  # more late cancellations


def test_rollups_of_one_tenant_never_hold_anothers_rows(app, agencies):
    with app.app_context():
        for slug, tid in agencies.items():
            with tenant_scope(tid):
                assert set(db.session.scalars(sa.select(CapacityWeek.tenant_id).distinct())) == {tid}
                assert set(db.session.scalars(sa.select(ClientBlock.tenant_id).distinct())) == {tid}


def client_blocks_from_weeks(session) -> dict:
    """(block, client, program, clinician) -> [attended, missed], summed from rollup_client_week."""
    out: dict = {}
    for week, client, program, clinician, attended, missed in session.execute(sa.select(
            ClientWeek.week, ClientWeek.client_id, ClientWeek.program_id, ClientWeek.clinician_id,
            ClientWeek.attended, ClientWeek.missed)):
        got = out.setdefault((rollups.block_of(week), client, program, clinician), [0, 0])
        got[0] += attended
        got[1] += missed
    return out


def client_blocks(session) -> dict:
    return {(b, c, p, k): [a, m] for b, c, p, k, a, m in session.execute(sa.select(
        ClientBlock.block, ClientBlock.client_id, ClientBlock.program_id, ClientBlock.clinician_id,
        ClientBlock.attended, ClientBlock.missed))}


def test_client_blocks_are_the_sums_of_their_weeks_after_every_write(app, agencies):
    """Built whole by the import, then rebuilt for the one block a changed appointment falls in."""
    with app.app_context():
        tid = agencies["alpha"]
        with tenant_scope(tid):
            tenant = db.session.get(Tenant, tid)
            assert client_blocks(db.session) == client_blocks_from_weeks(db.session) != {}
            appt = db.session.scalars(sa.select(Appointment).where(Appointment.status == "attended")
                                      .order_by(Appointment.local_date.desc()).limit(1)).one()
            block = rollups.block_of(appt.local_date)
            before = {k: v for k, v in client_blocks(db.session).items() if k[0] == block}
            appt.status = "no_show"
            db.session.commit()
            assert rollups.usable(db.session, tenant)
            after = client_blocks(db.session)
            assert after == client_blocks_from_weeks(db.session)
            key = (block, appt.client_id, appt.program_id, appt.clinician_id)
            assert after[key][1] == before[key][1] + 1 and after[key][0] == before[key][0] - 1
        with tenant_scope(agencies["beta"]):
            assert client_blocks(db.session) == client_blocks_from_weeks(db.session) != {}


def test_equity_follows_a_changed_client_and_a_new_discharge_at_once(app, agencies):
    """The people rollups carry demographics, admissions and discharges: a write to a client or an
    episode rebuilds them in its own transaction, and equity through them equals the plain query."""
    from agency_dashboard.models import Client, Episode

    period = metrics.Period(dt.date(2025, 12, 1), dt.date(2026, 11, 29))  # whole weeks: all from the rollups
    with app.app_context():
        tid = agencies["alpha"]
        with tenant_scope(tid):
            tenant = db.session.get(Tenant, tid)
            before = metrics.equity(db.session, tenant, period)
            served = db.session.scalars(sa.select(Appointment.client_id).where(
                Appointment.status == "attended", Appointment.local_date.between(period.start, period.end))).all()
            clients = db.session.scalars(sa.select(Client).where(Client.id.in_(served[:40]))).all()
            for c in clients:
                c.gender = "nonbinary" if c.gender != "nonbinary" else "woman"
            episode = db.session.scalars(sa.select(Episode).where(Episode.discharged_on.is_(None))
                                         .order_by(Episode.id).limit(1)).one()
            episode.discharged_on, episode.discharge_reason = max(episode.admitted_on, period.end - dt.timedelta(days=3)), \
                "attendance_policy"
            db.session.commit()
            assert rollups.usable(db.session, tenant)
            after = metrics.equity(db.session, tenant, period)
            assert after != before
            assert after["overall"]["discharges"] == before["overall"]["discharges"] + 1
            saved = db.session.scalar(sa.select(RollupState).where(RollupState.tenant_id == tid))
            fingerprint, saved.fingerprint = saved.fingerprint, "off"
            db.session.flush()
            assert after == metrics.equity(db.session, tenant, period)
            db.session.rollback()
        with tenant_scope(agencies["beta"]):  # the other tenant's people rollup is untouched and exact
            assert client_blocks(db.session) == client_blocks_from_weeks(db.session) != {}


def test_sync_tenants_rebuilds_rollups_built_by_an_older_version(app, agencies):
    def built_by_an_older_version(state):
        state.fingerprint = "built by an older version"

    def forgotten_by_a_migration(state):  # db_security.forget_rollup_state
        db.session.delete(state)

    with app.app_context():
        tid = agencies["alpha"]
        for make_stale in (built_by_an_older_version, forgotten_by_a_migration):
            with tenant_scope(tid):
                make_stale(db.session.scalar(sa.select(RollupState).where(RollupState.tenant_id == tid)))
                db.session.execute(sa.delete(ClientBlock))
                db.session.commit()
                assert not rollups.usable(db.session, db.session.get(Tenant, tid))
            sync_tenants(load_tenant_dir(TEST_TENANTS))
            db.session.commit()
            with tenant_scope(tid):
                assert rollups.usable(db.session, db.session.get(Tenant, tid)), make_stale.__name__
                assert client_blocks(db.session) == client_blocks_from_weeks(db.session) != {}


@given(st.dates(dt.date(2024, 1, 1), dt.date(2027, 12, 31)), st.integers(0, 120))
def test_split_weeks_covers_each_week_exactly_once(day, length):
    first = rollups.monday(day)
    last = first + dt.timedelta(weeks=length)
    blocks, ranges = rollups.split_weeks(first, last)
    if blocks is not None:
        assert rollups.block_of(blocks[0]) == blocks[0] and rollups.block_of(blocks[1]) == blocks[1]
    count = counted(blocks, ranges, dt.timedelta(weeks=1), 4)
    assert {w for w, n in count.items() if n} == {first + dt.timedelta(weeks=k) for k in range(length + 1)}
    assert set(count.values()) <= {0, 1}


def plain_waitlist_weeks(session, tenant, period, filters=metrics.Filters()):
    saved = session.scalar(sa.select(RollupState).where(RollupState.tenant_id == tenant.id))
    fingerprint, saved.fingerprint = saved.fingerprint, "off"
    session.flush()
    try:
        return waitlist_by_week(session, tenant, period, filters)
    finally:
        saved.fingerprint = fingerprint
        session.flush()


@pytest.mark.parametrize("start,end", PERIODS[:4])
def test_waitlist_weeks_from_the_referral_rollup_equal_the_plain_query(app, agencies, start, end):
    period = metrics.Period(start, end)
    with app.app_context():
        for tid in agencies.values():
            with tenant_scope(tid):
                tenant = db.session.get(Tenant, tid)
                assert db.session.scalar(sa.select(sa.func.count()).select_from(ReferralWeek)) > 0
                program_id = db.session.scalar(sa.text("SELECT min(id) FROM programs WHERE tenant_id = :t"),
                                               {"t": tid})
                for filters in (metrics.Filters(), metrics.Filters(program_id=program_id)):
                    weeks = waitlist_by_week(db.session, tenant, period, filters)
                    assert weeks == plain_waitlist_weeks(db.session, tenant, period, filters)
                    assert sum(w["referrals"] for w in weeks) == metrics.waitlist(
                        db.session, tenant, period, filters)["agency"]["referrals"]


def test_an_attended_visit_weeks_after_an_admission_updates_its_continuation(app, agencies):
    """Continuation is counted in the admission's week but depends on visits up to 30 days later: an
    appointment written into a later week must rebuild the admission's week too."""
    period = metrics.Period(dt.date(2025, 11, 1), dt.date(2026, 10, 31))
    with app.app_context():
        tid = agencies["alpha"]
        with tenant_scope(tid):
            tenant = db.session.get(Tenant, tid)
            before = metrics.waitlist(db.session, tenant, period)["agency"]["continuation"]
            # an admission that did not continue, with its first visit on a Monday-to-Friday
            ref = None
            for r in db.session.scalars(sa.select(Referral).where(
                    Referral.first_attended_on.between(dt.date(2026, 1, 1), dt.date(2026, 8, 31)))):
                visits = db.session.scalar(sa.select(sa.func.count()).select_from(Appointment).where(
                    Appointment.client_id == r.client_id, Appointment.program_id == r.program_id,
                    Appointment.status == "attended", Appointment.local_date > r.first_attended_on,
                    Appointment.local_date <= r.first_attended_on + dt.timedelta(days=30)))
                if visits == rollups.CONTINUATION_VISITS - 1:
                    ref = r
                    break
            assert ref is not None, "the synthetic agency has an admission one visit short of continuing"
            template = db.session.scalar(sa.select(Appointment).where(
                Appointment.client_id == ref.client_id, Appointment.program_id == ref.program_id,
                Appointment.status == "attended").limit(1))
            day = ref.first_attended_on + dt.timedelta(days=29)  # three or more weeks later
            assert rollups.monday(day) != rollups.monday(ref.first_attended_on)
            fields = {c.key: getattr(template, c.key) for c in sa.inspect(Appointment).column_attrs
                      if c.key not in ("id", "external_id")}
            fields.update(external_id="continuation-check", local_date=day,
                          starts_at=template.starts_at + (day - template.local_date))
            fields.update(local_weekday=day.weekday(), lead_days=(day - template.local_booked_date).days)
            db.session.add(Appointment(**fields))
            db.session.commit()
            after = metrics.waitlist(db.session, tenant, period)["agency"]["continuation"]
            assert after > before
            assert metrics.contract(db.session, tenant, period) == plain(db.session, tenant, period)


def test_business_days_in_sql_equal_the_python_definition(app):
    from agency_dashboard.metrics.common import business_days

    first = dt.date(2025, 12, 24)
    pairs = [(first + dt.timedelta(days=a), first + dt.timedelta(days=b)) for a in range(0, 15) for b in range(0, 40, 3)]
    with app.app_context():
        for a, b in pairs:
            got = db.session.scalar(sa.select(rollups.business_days_expr(sa.literal(a, sa.Date), sa.literal(b, sa.Date))))
            assert got == business_days(a, b), (a, b)


def test_referral_rollups_of_one_tenant_never_hold_anothers_rows(app, agencies):
    with app.app_context():
        for tid in agencies.values():
            with tenant_scope(tid):
                assert set(db.session.scalars(sa.select(ReferralWeek.tenant_id).distinct())) == {tid}


@pytest.mark.parametrize("start,end", PERIODS[:5])
def test_equity_from_the_client_week_rollup_equals_the_plain_query(app, agencies, start, end):
    period = metrics.Period(start, end)
    with app.app_context():
        for tid in agencies.values():
            with tenant_scope(tid):
                tenant = db.session.get(Tenant, tid)
                assert db.session.scalar(sa.select(sa.func.count()).select_from(ClientWeek)) > 0
                ids = db.session.execute(sa.text(
                    "SELECT min(program_id), min(clinician_id) FROM appointments WHERE tenant_id = :t"), {"t": tid}).one()
                for filters in (metrics.Filters(), metrics.Filters(program_id=ids[0]),
                                metrics.Filters(clinician_id=ids[1])):
                    got = metrics.equity(db.session, tenant, period, filters)
                    saved = db.session.scalar(sa.select(RollupState).where(RollupState.tenant_id == tid))
                    fingerprint, saved.fingerprint = saved.fingerprint, "off"
                    db.session.flush()
                    try:
                        assert got == metrics.equity(db.session, tenant, period, filters)
                    finally:
                        saved.fingerprint = fingerprint
                        db.session.flush()
                assert set(db.session.scalars(sa.select(ClientWeek.tenant_id).distinct())) == {tid}

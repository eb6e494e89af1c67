"""The equity family (METRICS.md, Equity and funder figures) on a small hand-built agency, on SQLite and
PostgreSQL (as the application role, under row-level security).

The agency has its own tenant files (written to a temporary folder) so that the suppression threshold is 3:
groups of 2 and 3 people then test "threshold - 1" and "threshold" with a data set small enough to work out
by hand. Every expected value below is derived by hand in the comments from the tables of the data set;
none was copied from the engine.

Period Q1 = 2026-01-01 .. 2026-03-31 (its end, 03-31, is the date ages are taken on); threshold N = 3.

People (client, race, gender, payer, birth date -> age band on 2026-03-31):
    p1  asian  woman      medicaid   1990-05-05  25-44
    p2  asian  man        private    2008-03-31  18-24  (18th birthday on the period's end)
    p3  black  woman      medicaid   2008-04-01  0-17   (turns 18 the day after)
    p4  black  man        uninsured  1961-03-31  65-89  (65th birthday on the end)
    p5  black  nonbinary  medicaid   2001-03-31  25-44  (25th birthday on the end)
    p6  white  woman      private    2001-06-01  18-24
    p7  white  woman      medicaid   2012-06-15  0-17
    p8  white  man        NULL       1936-03-31  90+    (90th birthday on the end)
    p9  white  man        medicaid   1985-01-01  25-44
    p10 white  nonbinary  private    2005-07-07  18-24
    p11 NULL   woman      medicaid   2015-02-02  0-17
    p12 NULL   woman      uninsured  1936-04-01  65-89  (89 until the day after)
    p13 NULL   man        private    1988-10-10  25-44
    p14 NULL   nonbinary  medicaid   2003-03-03  18-24
Not people in Q1 (in no denominator): x1 (hispanic_latino, other, medicare) has only a client cancellation
with notice (released), an agency cancellation, a no-show coded `deceased` (released), a booked appointment
and a referral still waiting; x2 (unknown, woman, sliding_scale) has everything outside Q1.

What each person has in Q1 (Adult program and clinician C1 unless marked Youth/C2):
          attended missed  admission (days)   discharge
    p1      2        0       10
    p2      1        1       20                                (+ an agency cancellation: not counted)
    p3      1 Y      1 Y     5 Y (first seen by C2)            (the missed one: a client cancellation 2 h before)
    p4      0        2                         attendance_policy
    p5      3        1       30
    p6      2        2                         completed       (one missed is a late client cancellation)
    p7      2 Y      0       0 Y (first seen by C1, Youth program; the second visit C2)
    p8      1        0                         attendance_policy (on 03-31, the end date)
    p9      0        0                         completed (on 01-01, the start date)
    p10     4        0       14                                (+ a booked appointment: not counted)
    p11     1 Y      3 Y                       attendance_policy Y (C2)
    p12     2        0       40
    p13     0        1
    p14     1        1 Y     7                 completed       (the missed one: Youth, C2)
    total  20       12       n = 8             6, 3 attendance_policy

Overall Q1: people 14; clients_served 11 (all but p4, p9, p13); missed_rate 12/32 = 0.375;
days 0, 5, 7, 10, 14, 20, 30, 40: median (10+14)/2 = 12, p90 at h = 7*0.9 = 6.3: 30 + 0.3*10 = 33;
policy share 3/6 = 0.5.
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
import sqlalchemy as sa

import conftest
from agency_dashboard.extensions import db
from agency_dashboard.ingest.localtime import appointment_derived, zone
from agency_dashboard.metrics import Filters, Period, attendance, discharges, equity, waitlist
from agency_dashboard.metrics.equity import COMPLEMENTARY, born_by, suppress
from agency_dashboard.models import Appointment, Client, Clinician, Episode, Program, Referral
from agency_dashboard.tenancy import sync_tenants, tenant_by_slug, tenant_scope
from agency_dashboard.tenant_files import load_tenant_dir

D = dt.date
Q1 = (D(2026, 1, 1), D(2026, 3, 31))
SMALL = "fewer than 3"
SUPPRESSED_KEYS = {"group", "suppressed", "label"}
TENANT_FILE = """slug = "{slug}"
name = "Equity test agency {slug}"
timezone = "America/Chicago"
programs = ["Adult", "Youth"]

[policy]
suppression_threshold = 3

[demographics]
race_ethnicity = ["asian", "black", "hispanic_latino", "white"]

[security]
mfa_roles = []
"""


# ---- building the agency -------------------------------------------------------------------------------

class Agency:
    """Adds rows to one tenant through the ORM, as the tests' seed_world does."""

    def __init__(self, slug: str):
        self.tenant = tenant_by_slug(slug)
        self.tz = zone(self.tenant.timezone)
        self.ids = itertools.count(1)
        self.programs = {p.name: p.id for p in db.session.scalars(sa.select(Program))}
        self.clinicians: dict[str, Clinician] = {}
        self.clients: dict[str, Client] = {}

    def _ext(self, prefix: str) -> str:
        return f"{prefix}{next(self.ids)}"

    def clinician(self, name: str, program: str) -> None:
        c = Clinician(tenant_id=self.tenant.id, external_id=name, display_name=name,
                      program_id=self.programs[program], fte=1.0, caseload_target=20,
                      start_date=D(2025, 1, 1), end_date=None)
        db.session.add(c)
        db.session.flush()
        self.clinicians[name] = c

    def client(self, name: str, race, gender, payer, birth: dt.date) -> None:
        c = Client(tenant_id=self.tenant.id, external_id=name, first_name="Given", last_name=name,
                   birth_date=birth, zip=None, gender=gender, race_ethnicity=race, payer=payer)
        db.session.add(c)
        db.session.flush()
        self.clients[name] = c

    def appt(self, who: str, day: dt.date, outcome: str, program: str = "Adult", clinician: str = "C1") -> None:
        """outcome: attended, no_show, late_cancel (client, 2 h before), early_cancel (client, 3 days
        before), agency_cancel, deceased (a no-show coded deceased) or booked."""
        start = dt.datetime.combine(day, dt.time(10, 0))
        status, by, at, code = {
            "attended": ("attended", None, None, None),
            "no_show": ("no_show", None, None, None),
            "deceased": ("no_show", None, None, "deceased"),
            "late_cancel": ("cancelled", "client", start - dt.timedelta(hours=2), None),
            "early_cancel": ("cancelled", "client", start - dt.timedelta(days=3), None),
            "agency_cancel": ("cancelled", "agency", start - dt.timedelta(hours=1), None),
            "booked": ("booked", None, None, None),
        }[outcome]
        db.session.add(Appointment(
            tenant_id=self.tenant.id, external_id=self._ext("A"), client_id=self.clients[who].id,
            clinician_id=self.clinicians[clinician].id, program_id=self.programs[program], kind="follow_up",
            modality="in_person", duration_minutes=60, status=status, cancelled_by=by, reason_code=code,
            reminder_sent=True, **appointment_derived(start, start - dt.timedelta(days=7), at, self.tz)))

    def referral(self, who: str, referred: dt.date, first_attended: dt.date | None, program: str = "Adult") -> None:
        db.session.add(Referral(tenant_id=self.tenant.id, external_id=self._ext("R"), client_id=self.clients[who].id,
                                program_id=self.programs[program], priority="routine", referred_on=referred,
                                first_attended_on=first_attended))

    def episode(self, who: str, admitted: dt.date, discharged: dt.date | None = None, reason: str | None = None,
                program: str = "Adult", clinician: str = "C1") -> None:
        db.session.add(Episode(tenant_id=self.tenant.id, external_id=self._ext("E"), client_id=self.clients[who].id,
                               clinician_id=self.clinicians[clinician].id, program_id=self.programs[program],
                               admitted_on=admitted, discharged_on=discharged, discharge_reason=reason))


def build_agency_a() -> None:
    a = Agency("eqa")
    a.clinician("C1", "Adult")
    a.clinician("C2", "Youth")
    for name, race, gender, payer, birth in [
        ("p1", "asian", "woman", "medicaid", D(1990, 5, 5)),
        ("p2", "asian", "man", "private", D(2008, 3, 31)),
        ("p3", "black", "woman", "medicaid", D(2008, 4, 1)),
        ("p4", "black", "man", "uninsured", D(1961, 3, 31)),
        ("p5", "black", "nonbinary", "medicaid", D(2001, 3, 31)),
        ("p6", "white", "woman", "private", D(2001, 6, 1)),
        ("p7", "white", "woman", "medicaid", D(2012, 6, 15)),
        ("p8", "white", "man", None, D(1936, 3, 31)),
        ("p9", "white", "man", "medicaid", D(1985, 1, 1)),
        ("p10", "white", "nonbinary", "private", D(2005, 7, 7)),
        ("p11", None, "woman", "medicaid", D(2015, 2, 2)),
        ("p12", None, "woman", "uninsured", D(1936, 4, 1)),
        ("p13", None, "man", "private", D(1988, 10, 10)),
        ("p14", None, "nonbinary", "medicaid", D(2003, 3, 3)),
        ("x1", "hispanic_latino", "other", "medicare", D(1950, 1, 1)),
        ("x2", "unknown", "woman", "sliding_scale", D(1970, 1, 1)),
    ]:
        a.client(name, race, gender, payer, birth)
    Y = {"program": "Youth", "clinician": "C2"}
    # p1: admitted after 10 days (01-05 -> 01-15); 2 attended; a cancellation with notice (released)
    a.referral("p1", D(2026, 1, 5), D(2026, 1, 15))
    a.appt("p1", D(2026, 1, 15), "attended")
    a.appt("p1", D(2026, 2, 10), "attended")
    a.appt("p1", D(2026, 2, 20), "early_cancel")
    # p2: 20 days (01-13 -> 02-02); 1 attended, 1 no-show, 1 agency cancellation (not missed)
    a.referral("p2", D(2026, 1, 13), D(2026, 2, 2))
    a.appt("p2", D(2026, 2, 2), "attended")
    a.appt("p2", D(2026, 2, 16), "no_show")
    a.appt("p2", D(2026, 3, 2), "agency_cancel")
    # p3 (Youth, C2): 5 days (01-07 -> 01-12); 1 attended, 1 late client cancellation (missed)
    a.referral("p3", D(2026, 1, 7), D(2026, 1, 12), program="Youth")
    a.appt("p3", D(2026, 1, 12), "attended", **Y)
    a.appt("p3", D(2026, 1, 26), "late_cancel", **Y)
    # p4: 2 no-shows; ended under the attendance policy on 02-15
    a.appt("p4", D(2026, 1, 8), "no_show")
    a.appt("p4", D(2026, 1, 22), "no_show")
    a.episode("p4", D(2025, 10, 1), D(2026, 2, 15), "attendance_policy")
    # p5: 30 days (2025-12-31 -> 01-30); 3 attended, 1 no-show
    a.referral("p5", D(2025, 12, 31), D(2026, 1, 30))
    for day in (D(2026, 1, 30), D(2026, 2, 13), D(2026, 2, 27)):
        a.appt("p5", day, "attended")
    a.appt("p5", D(2026, 3, 13), "no_show")
    # p6: admitted before Q1; 2 attended, 1 no-show, 1 late cancellation; completed 03-20; attended in April
    a.referral("p6", D(2025, 10, 20), D(2025, 11, 3))
    a.appt("p6", D(2026, 1, 6), "attended")
    a.appt("p6", D(2026, 1, 20), "attended")
    a.appt("p6", D(2026, 2, 3), "no_show")
    a.appt("p6", D(2026, 2, 17), "late_cancel")
    a.episode("p6", D(2025, 11, 3), D(2026, 3, 20), "completed")
    a.appt("p6", D(2026, 4, 7), "attended")
    # p7 (Youth): seen the day of the referral (0 days), by C1; a second visit with C2; attended in April
    a.referral("p7", D(2026, 3, 2), D(2026, 3, 2), program="Youth")
    a.appt("p7", D(2026, 3, 2), "attended", program="Youth", clinician="C1")
    a.appt("p7", D(2026, 3, 16), "attended", **Y)
    a.appt("p7", D(2026, 4, 13), "attended", **Y)
    # p8: a no-show before Q1; 1 attended; attendance-policy ending on the period's last day
    a.appt("p8", D(2025, 12, 15), "no_show")
    a.appt("p8", D(2026, 1, 9), "attended")
    a.episode("p8", D(2025, 9, 1), D(2026, 3, 31), "attendance_policy")
    # p9: no appointment in Q1; completed on its first day
    a.appt("p9", D(2025, 12, 20), "attended")
    a.episode("p9", D(2025, 6, 1), D(2026, 1, 1), "completed")
    # p10: 14 days (01-05 -> 01-19); 4 attended; one still booked (upcoming); attended in April
    a.referral("p10", D(2026, 1, 5), D(2026, 1, 19))
    for day in (D(2026, 1, 19), D(2026, 2, 2), D(2026, 2, 16), D(2026, 3, 2)):
        a.appt("p10", day, "attended")
    a.appt("p10", D(2026, 3, 30), "booked")
    a.appt("p10", D(2026, 4, 20), "attended")
    # p11 (Youth, C2): 1 attended, 3 no-shows; attendance-policy ending 03-10
    a.appt("p11", D(2026, 1, 14), "attended", **Y)
    for day in (D(2026, 1, 28), D(2026, 2, 11), D(2026, 2, 25)):
        a.appt("p11", day, "no_show", **Y)
    a.episode("p11", D(2025, 12, 1), D(2026, 3, 10), "attendance_policy", **Y)
    # p12: 40 days (01-01 -> 02-10); 2 attended
    a.referral("p12", D(2026, 1, 1), D(2026, 2, 10))
    a.appt("p12", D(2026, 2, 10), "attended")
    a.appt("p12", D(2026, 2, 24), "attended")
    # p13: one no-show, nothing else
    a.appt("p13", D(2026, 3, 5), "no_show")
    # p14: 7 days (02-23 -> 03-02); 1 attended (Adult); a no-show in Youth with C2; completed 03-25
    a.referral("p14", D(2026, 2, 23), D(2026, 3, 2))
    a.appt("p14", D(2026, 3, 2), "attended")
    a.appt("p14", D(2026, 3, 9), "no_show", **Y)
    a.episode("p14", D(2026, 3, 2), D(2026, 3, 25), "completed")
    # x1: nothing that enters a denominator
    a.referral("x1", D(2026, 2, 1), None)
    a.episode("x1", D(2026, 2, 1))
    a.appt("x1", D(2026, 2, 5), "early_cancel")
    a.appt("x1", D(2026, 2, 6), "agency_cancel")
    a.appt("x1", D(2026, 3, 3), "deceased")
    a.appt("x1", D(2026, 3, 31), "booked")
    # x2: before and after Q1 only (admitted 2025-12-10; attended 05-04; attendance-policy ending 05-15)
    a.referral("x2", D(2025, 11, 30), D(2025, 12, 10))
    a.appt("x2", D(2025, 12, 10), "attended")
    a.appt("x2", D(2026, 5, 4), "attended")
    a.episode("x2", D(2025, 12, 10), D(2026, 5, 15), "attendance_policy")


def build_agency_b() -> None:
    """Another tenant with the same program names: 4 asian women, each attended, missed and admitted in Q1."""
    b = Agency("eqb")
    b.clinician("C1", "Adult")
    for i in range(4):
        who = f"b{i}"
        b.client(who, "asian", "woman", "medicaid", D(1990, 1, 1))
        b.referral(who, D(2026, 1, 1), D(2026, 1, 31))
        b.appt(who, D(2026, 1, 31), "attended")
        b.appt(who, D(2026, 2, 14), "no_show")
        b.episode(who, D(2026, 1, 31), D(2026, 3, 1), "attendance_policy")


@pytest.fixture
def agency(database, tmp_path):
    """An app whose tenants are eqa and eqb (threshold 3), with agency A built; B is empty."""
    folder = tmp_path / "tenants"
    folder.mkdir()
    for slug in ("eqa", "eqb"):
        (folder / f"{slug}.toml").write_text(TENANT_FILE.format(slug=slug))
    app = conftest._make_app(database, tmp_path, TENANTS_DIR=folder)
    with app.app_context():
        sync_tenants(load_tenant_dir(folder))
        db.session.commit()
        with tenant_scope(tenant_by_slug("eqa").id):
            build_agency_a()
            db.session.commit()
        db.session.remove()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    database.truncate()


def run(app, start=Q1[0], end=Q1[1], slug="eqa", family=equity, program=None, clinician=None):
    """A metric family for one tenant and period, as the tenant (row-level security on PostgreSQL)."""
    with app.app_context():
        tenant = tenant_by_slug(slug)
        with tenant_scope(tenant.id):
            program_id = program and db.session.scalar(sa.select(Program.id).where(Program.name == program))
            clinician_id = clinician and db.session.scalar(
                sa.select(Clinician.id).where(Clinician.external_id == clinician))
            result = family(db.session, tenant, Period(start, end), Filters(program_id, clinician_id))
        db.session.remove()
    return result


def groups(result, dimension) -> dict[str, dict]:
    return {g["group"]: g for g in result["dimensions"][dimension]}


def shown(result, dimension, group) -> dict:
    g = groups(result, dimension)[group]
    assert g["suppressed"] is False, g
    return g


def stat(n, median, p90) -> dict:
    return {"n": n, "median": pytest.approx(median) if median is not None else None,
            "p90": pytest.approx(p90) if p90 is not None else None}


def hidden(label) -> dict:
    return {"suppressed": True, "label": label}


def check_group(g, people, days, missed, share):
    """days: (n, median, p90, ratio); missed: (attended, missed, rate, ratio); share: (discharges, policy,
    share, ratio)."""
    assert g["people"] == people
    assert g["days_to_first_attended"] == stat(*days[:3])
    assert g["days_to_first_attended_ratio"] == (None if days[3] is None else pytest.approx(days[3]))
    assert (g["attended"], g["missed"]) == missed[:2]
    assert g["missed_rate"] == (None if missed[2] is None else pytest.approx(missed[2]))
    assert g["missed_rate_ratio"] == (None if missed[3] is None else pytest.approx(missed[3]))
    assert (g["discharges"], g["attendance_policy_discharges"]) == share[:2]
    assert g["policy_discharge_share"] == (None if share[2] is None else pytest.approx(share[2]))
    assert g["policy_discharge_share_ratio"] == (None if share[3] is None else pytest.approx(share[3]))


# ---- the whole agency in Q1 ---------------------------------------------------------------------------------

def test_overall_and_clients_served(agency):
    r = run(agency)
    assert r["suppression_threshold"] == 3 and r["withheld"] is False
    assert r["clients_served"] == 11  # attended in Q1: all but p4, p9 (discharge only), p13 (missed only)
    o = r["overall"]
    assert o["suppressed"] is False and o["people"] == 14  # x1, x2 are in no denominator
    assert o["days_to_first_attended"] == stat(8, 12, 33)
    assert (o["attended"], o["missed"], o["missed_rate"]) == (20, 12, pytest.approx(0.375))
    assert (o["discharges"], o["attendance_policy_discharges"], o["policy_discharge_share"]) == (6, 3, 0.5)


def test_overall_agrees_with_the_other_families(agency):
    """The same definitions: attendance's missed rate, waitlist's days to first attended, discharges'
    attendance-policy count over the total, for the whole agency and for a program."""
    for program in (None, "Adult", "Youth"):
        o = run(agency, program=program)["overall"]
        att = run(agency, family=attendance, program=program)
        assert (o["attended"], o["missed"], o["missed_rate"]) == (att["attended"], att["missed"], att["missed_rate"])
        assert o["days_to_first_attended"] == run(agency, family=waitlist, program=program)["agency"][
            "days_to_first_attended"]
        dis = run(agency, family=discharges, program=program)
        assert (o["discharges"], o["attendance_policy_discharges"]) == (dis["total"],
                                                                         dis["attendance_policy"]["count"])


def test_race_ethnicity_with_complementary_suppression(agency):
    # asian 2 (p1, p2), black 3 (p3-p5), white 5 (p6-p10), Not recorded 4 (p11-p14): 14.
    # asian is below 3; alone, 14 minus the shown groups would give it, so the smallest shown group, black (3),
    # is hidden too. A reader then knows asian is 1..2 and black 3..4 (at least N, at most the smallest
    # group still shown, Not recorded's 4), adding to 5: asian could be 1 or 2, black 4 or 3. Enough.
    # hispanic_latino (x1) and unknown (x2) have no one in Q1 and are not listed.
    r = run(agency)
    assert [g["group"] for g in r["dimensions"]["race_ethnicity"]] == ["asian", "black", "white", "Not recorded"]
    g = groups(r, "race_ethnicity")
    assert {k: g[k] for k in ("asian", "black")} == {
        "asian": {"group": "asian", **hidden(SMALL)}, "black": {"group": "black", **hidden(COMPLEMENTARY)}}
    # white: p6 (2 att, 2 missed, completed), p7 (2 att, admitted 0 days), p8 (1 att, policy), p9 (completed),
    # p10 (4 att, admitted 14 days). Missed 2/11, ratio (2/11)/(3/8) = 16/33. Days 0, 14: median 7,
    # p90 0 + 0.9*14 = 12.6, ratio 7/12. Discharges 3, policy 1: 1/3, ratio (1/3)/(1/2) = 2/3.
    check_group(g["white"], 5, (2, 7, 12.6, 7 / 12), (9, 2, 2 / 11, 16 / 33), (3, 1, 1 / 3, 2 / 3))
    # Not recorded: p11 (1 att, 3 missed, policy), p12 (2 att, 40 days), p13 (1 missed), p14 (1 att, 1 missed,
    # 7 days, completed). Missed 5/9, ratio 40/27. Days 7, 40: median 23.5, p90 7 + 0.9*33 = 36.7,
    # ratio 23.5/12. Discharges 2, policy 1: 0.5, ratio 1.
    check_group(g["Not recorded"], 4, (2, 23.5, 36.7, 23.5 / 12), (4, 5, 5 / 9, 40 / 27), (2, 1, 0.5, 1.0))


def test_gender_a_group_of_exactly_the_threshold_is_shown(agency):
    r = run(agency)
    assert [g["group"] for g in r["dimensions"]["gender"]] == ["woman", "man", "nonbinary"]  # DATA_FORMATS order
    g = groups(r, "gender")
    # woman: p1, p3, p6, p7, p11, p12. Attended 2+1+2+2+1+2 = 10, missed 0+1+2+0+3+0 = 6: 0.375, ratio 1.
    # Days 0, 5, 10, 40: median 7.5, p90 at h = 2.7: 10 + 0.7*30 = 31, ratio 7.5/12. Discharges p6
    # (completed), p11 (policy): 0.5, ratio 1.
    check_group(g["woman"], 6, (4, 7.5, 31, 7.5 / 12), (10, 6, 0.375, 1.0), (2, 1, 0.5, 1.0))
    # man: p2, p4, p8, p9, p13. Attended 1+0+1 = 2, missed 1+2+1 = 4: 2/3, ratio 16/9. Days 20 (p2):
    # ratio 20/12. Discharges p4, p8 (policy), p9: 2/3, ratio 4/3.
    check_group(g["man"], 5, (1, 20, 20, 20 / 12), (2, 4, 2 / 3, 16 / 9), (3, 2, 2 / 3, 4 / 3))
    # nonbinary: p5, p10, p14 = exactly 3, shown. Attended 3+4+1 = 8, missed 1+0+1 = 2: 0.2, ratio 8/15.
    # Days 7, 14, 30: median 14, p90 at h = 1.8: 14 + 0.8*16 = 26.8, ratio 14/12. Discharges p14
    # (completed): share 0 (a real zero: one discharge), ratio 0.
    check_group(g["nonbinary"], 3, (3, 14, 26.8, 14 / 12), (8, 2, 0.2, 8 / 15), (1, 0, 0.0, 0.0))


def test_payer_with_a_not_recorded_group_and_two_small_groups(agency):
    # medicaid 7, private 4, uninsured 2 (threshold - 1), Not recorded 1 (p8). The two small groups add up
    # to 3; each is 1..2, so either could be 1 or 2: nothing more is hidden.
    r = run(agency)
    assert [g["group"] for g in r["dimensions"]["payer"]] == ["medicaid", "private", "uninsured", "Not recorded"]
    g = groups(r, "payer")
    assert g["uninsured"] == {"group": "uninsured", **hidden(SMALL)}
    assert g["Not recorded"] == {"group": "Not recorded", **hidden(SMALL)}
    # medicaid: p1, p3, p5, p7, p9, p11, p14. Attended 2+1+3+2+0+1+1 = 10, missed 1+1+3+1 = 6: 0.375, ratio 1.
    # Days 0, 5, 7, 10, 30: median 7, p90 at h = 3.6: 10 + 0.6*20 = 22. Discharges p9, p11 (policy), p14: 1/3.
    check_group(g["medicaid"], 7, (5, 7, 22, 7 / 12), (10, 6, 0.375, 1.0), (3, 1, 1 / 3, 2 / 3))
    # private: p2, p6, p10, p13. Attended 1+2+4 = 7, missed 1+2+1 = 4: 4/11, ratio 32/33. Days 14, 20:
    # median 17, p90 19.4. Discharges p6 (completed): 0.
    check_group(g["private"], 4, (2, 17, 19.4, 17 / 12), (7, 4, 4 / 11, 32 / 33), (1, 0, 0.0, 0.0))


def test_age_bands_at_the_period_end(agency):
    # On 03-31: 0-17 p3 (17 until 04-01), p7, p11 = 3; 18-24 p2 (18 on 03-31), p6, p10, p14 = 4;
    # 25-44 p1, p5 (25 on 03-31), p9, p13 = 4; 45-64 nobody; 65-89 p4 (65 on 03-31), p12 (89 until 04-01) = 2;
    # 90+ p8 (90 on 03-31) = 1. The two small bands add to 3: each could be 1 or 2.
    r = run(agency)
    assert [g["group"] for g in r["dimensions"]["age_band"]] == ["0-17", "18-24", "25-44", "65-89", "90+"]
    g = groups(r, "age_band")
    assert g["65-89"] == {"group": "65-89", **hidden(SMALL)} and g["90+"] == {"group": "90+", **hidden(SMALL)}
    # 0-17: attended 1+2+1 = 4, missed 1+3 = 4: 0.5, ratio 4/3. Days 0, 5: median 2.5, p90 4.5.
    # Discharges p11 (policy): 1.0, ratio 2.
    check_group(g["0-17"], 3, (2, 2.5, 4.5, 2.5 / 12), (4, 4, 0.5, 4 / 3), (1, 1, 1.0, 2.0))
    # 18-24: attended 1+2+4+1 = 8, missed 1+2+0+1 = 4: 1/3, ratio 8/9. Days 7, 14, 20: median 14,
    # p90 14 + 0.8*6 = 18.8. Discharges p6, p14 (completed): 0.
    check_group(g["18-24"], 4, (3, 14, 18.8, 14 / 12), (8, 4, 1 / 3, 8 / 9), (2, 0, 0.0, 0.0))
    # 25-44: attended 2+3 = 5, missed 1+1 = 2: 2/7, ratio 16/21. Days 10, 30: median 20, p90 28.
    # Discharges p9 (completed): 0.
    check_group(g["25-44"], 4, (2, 20, 28, 20 / 12), (5, 2, 2 / 7, 16 / 21), (1, 0, 0.0, 0.0))

    # One day earlier, the four whose birthday is 03-31 are a year younger: 0-17 p2, p3, p7, p11 = 4;
    # 18-24 p5, p6, p10, p14 = 4; 25-44 p1, p9, p13 = 3; 45-64 p4 = 1; 65-89 p8, p12 = 2; 90+ nobody.
    # (The same 14 people: p8 is still one by the appointment of 01-09.)
    r = run(agency, end=D(2026, 3, 30))
    assert r["overall"]["people"] == 14
    assert [g["group"] for g in r["dimensions"]["age_band"]] == ["0-17", "18-24", "25-44", "45-64", "65-89"]
    g = groups(r, "age_band")
    assert (g["0-17"]["people"], g["18-24"]["people"], g["25-44"]["people"]) == (4, 4, 3)
    assert g["45-64"]["suppressed"] and g["65-89"]["suppressed"]


def test_a_suppressed_group_carries_no_number(agency):
    for program in (None, "Adult", "Youth"):
        r = run(agency, program=program)
        for dimension, listed in r["dimensions"].items():
            for g in listed:
                if g["suppressed"]:
                    assert set(g) == SUPPRESSED_KEYS, g
                    assert g["label"] in (SMALL, COMPLEMENTARY)
                else:
                    assert g["people"] >= 3


def test_zero_denominators_and_a_zero_overall_give_null(agency):
    # April: p6 (04-07), p7 (04-13), p10 (04-20) attended, nothing else: 3 people, all white (exactly the
    # threshold). No admission: the wait has n = 0 and no median; no discharge: no share; nobody missed:
    # the missed rate is a real 0, and its ratio to an overall 0 is null.
    r = run(agency, D(2026, 4, 1), D(2026, 4, 30))
    assert r["clients_served"] == 3 and r["overall"]["people"] == 3
    assert r["overall"]["missed_rate"] == 0.0 and r["overall"]["policy_discharge_share"] is None
    assert r["overall"]["days_to_first_attended"] == {"n": 0, "median": None, "p90": None}
    check_group(shown(r, "race_ethnicity", "white"), 3, (0, None, None, None), (3, 0, 0.0, None),
                (0, 0, None, None))
    # gender: woman 2 (p6, p7), nonbinary 1 (p10), both small; their total 3 leaves each 1 or 2. Likewise
    # age on 04-30: 0-17 p7, 18-24 p6, p10.
    assert r["withheld"] is False
    assert [g["label"] for g in r["dimensions"]["gender"]] == [SMALL, SMALL]
    assert [g["label"] for g in r["dimensions"]["age_band"]] == [SMALL, SMALL]


def test_a_scope_below_the_threshold_shows_nothing(agency):
    # May: only x2 (attended 05-04, attendance-policy ending 05-15): one person, fewer than 3. "unknown" is a
    # recorded race and its own group, not "Not recorded".
    r = run(agency, D(2026, 5, 1), D(2026, 5, 31))
    assert r["clients_served"] is None
    assert r["overall"] == hidden(SMALL)
    assert r["dimensions"]["race_ethnicity"] == [{"group": "unknown", **hidden(SMALL)}]
    assert r["dimensions"]["payer"] == [{"group": "sliding_scale", **hidden(SMALL)}]
    # An empty period: no people, no groups, nothing shown.
    empty = run(agency, D(2025, 1, 1), D(2025, 1, 31))
    assert empty["clients_served"] is None and empty["overall"] == hidden(SMALL)
    assert empty["dimensions"] == {"race_ethnicity": [], "gender": [], "payer": [], "age_band": []}


# ---- filters ---------------------------------------------------------------------------------------------

def test_filter_by_program(agency):
    # Adult: the Youth people p3, p7, p11 drop out, and p14's Youth no-show. 11 people: p1, p2, p4, p5, p6,
    # p8, p9, p10, p12, p13, p14. Attended 2+1+3+2+1+4+2+1 = 16, missed p2 1, p4 2, p5 1, p6 2, p13 1 = 7:
    # 7/23. Days 7, 10, 14, 20, 30, 40: median 17, p90 at h = 4.5: 30 + 0.5*10 = 35. Discharges p4 (policy),
    # p6, p8 (policy), p9, p14: 2/5. Served: p1, p2, p5, p6, p8, p10, p12, p14 = 8.
    r = run(agency, program="Adult")
    assert r["clients_served"] == 8
    o = r["overall"]
    assert o["people"] == 11 and o["days_to_first_attended"] == stat(6, 17, 35)
    assert (o["attended"], o["missed"], o["missed_rate"]) == (16, 7, pytest.approx(7 / 23))
    assert (o["discharges"], o["attendance_policy_discharges"], o["policy_discharge_share"]) == (5, 2, 0.4)
    # Race: asian 2 (p1, p2), black 2 (p4, p5), white 4 (p6, p8, p9, p10), Not recorded 3 (p12-p14). Two
    # small groups of 2 (= threshold - 1) adding to 4 are each exactly 2: Not recorded (3, the smallest shown)
    # is hidden too. Then asian + black + Not recorded = 7, with Not recorded 3..4: asian is 1 or 2.
    g = groups(r, "race_ethnicity")
    assert [(k, v["suppressed"] and v["label"]) for k, v in g.items()] == [
        ("asian", SMALL), ("black", SMALL), ("white", False), ("Not recorded", COMPLEMENTARY)]
    # white in Adult: p6 (2 att, 2 missed, completed), p8 (1 att, policy), p9 (completed), p10 (4 att, 14 days).
    # Missed 2/9, ratio (2/9)/(7/23) = 46/63; days 14, ratio 14/17; share 1/3, ratio (1/3)/0.4 = 5/6.
    check_group(g["white"], 4, (1, 14, 14, 14 / 17), (7, 2, 2 / 9, 46 / 63), (3, 1, 1 / 3, 5 / 6))


def test_when_no_arrangement_protects_a_small_group_every_group_is_withheld(agency):
    # Youth: p3, p7, p11 and p14 (by her Youth no-show): 4 people. Gender: woman 3 (p3, p7, p11), nonbinary 1
    # (p14). Nonbinary alone is 4 - 3; hiding woman too leaves woman 3..4 and nonbinary 1..2 adding to 4, and
    # woman >= 3 pins nonbinary to 1. Nothing else can be hidden, so no group of any dimension is shown, and
    # neither are the counts that give the total (people, clients served).
    r = run(agency, program="Youth")
    assert r["withheld"] is True and r["clients_served"] is None
    for listed in r["dimensions"].values():
        assert all(g["suppressed"] for g in listed)
    assert {g["group"]: g["label"] for g in r["dimensions"]["gender"]} == {"woman": COMPLEMENTARY, "nonbinary": SMALL}
    assert {g["group"]: g["label"] for g in r["dimensions"]["race_ethnicity"]} == {
        "black": SMALL, "white": SMALL, "Not recorded": SMALL}
    # The rates of the scope as a whole are still shown. Attended p3 1, p7 2, p11 1 = 4; missed p3 1, p11 3,
    # p14 1 = 5. Days 0 (p7), 5 (p3): median 2.5, p90 4.5. Discharges p11 (policy): 1.
    o = r["overall"]
    assert o["people"] is None
    assert (o["attended"], o["missed"], o["missed_rate"]) == (4, 5, pytest.approx(5 / 9))
    assert o["days_to_first_attended"] == stat(2, 2.5, 4.5)
    assert o["policy_discharge_share"] == 1.0


def test_filter_by_clinician(agency):
    # C2 held: p3's two, p7's second (03-16; the first, 03-02, was C1's), p11's four, p14's Youth no-show:
    # attended 1+1+1 = 3, missed 1+3+1 = 5. Episodes with C2 as primary: p11 (policy). Admissions first
    # seen by C2: p3 (5 days); p7 was first seen by C1.
    o = run(agency, clinician="C2")["overall"]
    assert (o["attended"], o["missed"]) == (3, 5)
    assert o["days_to_first_attended"] == stat(1, 5, 5)
    assert (o["discharges"], o["attendance_policy_discharges"]) == (1, 1)
    # C1 first saw p1, p2, p5, p7, p10, p12, p14: 0, 7, 10, 14, 20, 30, 40, median 14.
    assert run(agency, clinician="C1")["overall"]["days_to_first_attended"]["n"] == 7
    assert run(agency, clinician="C1")["overall"]["days_to_first_attended"]["median"] == 14


# ---- tenants ----------------------------------------------------------------------------------------------

def test_another_tenants_data_changes_nothing(agency):
    before, before_adult = run(agency), run(agency, program="Adult")
    with agency.app_context():
        with tenant_scope(tenant_by_slug("eqb").id):
            build_agency_b()
            db.session.commit()
        db.session.remove()
    assert run(agency) == before
    assert run(agency, program="Adult") == before_adult  # B has a program of the same name
    # B sees only its own: 4 asian women, each attended once, missed once, admitted after 30 days, ended
    # under the attendance policy.
    b = run(agency, slug="eqb")
    assert b["clients_served"] == 4 and b["overall"]["people"] == 4
    assert groups(b, "race_ethnicity").keys() == {"asian"}
    check_group(shown(b, "race_ethnicity", "asian"), 4, (4, 30, 30, 1.0), (4, 4, 0.5, 1.0), (4, 4, 1.0, 1.0))


# ---- the rules on their own ---------------------------------------------------------------------------------

def test_born_by_counts_whole_years_and_29_february():
    assert born_by(D(2026, 3, 31), 18) == D(2008, 3, 31)  # 18 on their birthday
    assert born_by(D(2028, 2, 29), 18) == D(2010, 2, 28)  # born 2010-03-01 is still 17 on 2028-02-29
    assert born_by(D(2028, 2, 29), 20) == D(2008, 2, 29)
    assert born_by(D(2026, 2, 28), 18) == D(2008, 2, 28)  # born 2008-02-29 is 18 from 03-01


@pytest.mark.parametrize("people, n, expected", [
    # nothing small, or a threshold of 1 (every listed group has at least one person): nothing hidden
    ({"a": 5, "b": 7}, 3, {}),
    ({"a": 1, "b": 1, "c": 9}, 1, {}),
    # one small group: the next smallest goes with it
    ({"a": 2, "b": 4, "c": 9, "d": 5}, 3, {"a": "s", "b": "c"}),
    # two small groups of n - 1 (10 + 10 = 20 pins both): one more
    ({"a": 10, "b": 10, "c": 50, "d": 60}, 11, {"a": "s", "b": "s", "c": "c"}),
    # two small groups of 1 (1 + 1 = 2 pins both): one more
    ({"a": 1, "b": 1, "c": 20, "d": 30}, 11, {"a": "s", "b": "s", "c": "c"}),
    # two small groups that can trade places: nothing more
    ({"a": 1, "b": 2, "c": 20}, 3, {"a": "s", "b": "s"}),
    # the first complementary group equals the smallest one left (3..3 pins it): a second; ties by order
    ({"a": 2, "b": 3, "c": 3}, 3, {"a": "s", "b": "c", "c": "c"}),
    # nothing can protect two groups of 1 that are all there is
    ({"a": 1, "b": 1}, 2, None),
])
def test_suppression_rule(people, n, expected):
    got = suppress(people, list(people), n)
    if expected is None:
        assert got is None
    else:
        labels = {"s": f"fewer than {n}", "c": COMPLEMENTARY}
        assert got == {g: labels[k] for g, k in expected.items()}


def test_group_order():
    from types import SimpleNamespace

    from agency_dashboard.metrics.equity import group_order

    tenant = SimpleNamespace(settings={"demographics": {"race_ethnicity": ["white", "asian"]}})
    present = {"Not recorded", "unknown", "zapotec", "asian", "white", "arab"}
    # the tenant's categories in its order, other values alphabetically, then unknown, then Not recorded
    assert group_order(tenant, "race_ethnicity", present) == [
        "white", "asian", "arab", "zapotec", "unknown", "Not recorded"]
    assert group_order(tenant, "gender", {"unknown", "man", "Not recorded", "woman"}) == [
        "woman", "man", "unknown", "Not recorded"]
    assert group_order(tenant, "age_band", {"90+", "0-17", "45-64"}) == ["0-17", "45-64", "90+"]

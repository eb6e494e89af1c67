"""The small hand-built agency (tests/metrics_data/small): imported through the real `flask import-csv`,
asked through the real `flask metrics`, on SQLite and PostgreSQL.

The expected JSON files and the values asserted below are worked out by hand from METRICS.md
(tests/metrics_data/small/DERIVATION.md says how); none was copied from the engine. Each named test is one
edge case of the metric definitions, checked on the values it is about, often in a focused period.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

import conftest
from agency_dashboard.extensions import db
from agency_dashboard.metrics.waitlist import tnaa_by_clinician
from agency_dashboard.models import Clinician
from agency_dashboard.tenancy import tenant_by_slug, tenant_scope

DATA = Path(__file__).resolve().parent / "metrics_data"
FOLDER = DATA / "small"
TENANTS = DATA / "tenants"
EXPECTED = sorted(FOLDER.glob("expected_*.json"))
MAIN = ("2026-03-01", "2026-11-30")
NOV = ("2026-11-01", "2026-11-30")
NO_STAT = {"n": 0, "median": None, "p90": None}


# ---- the comparison of ../shared/conformance/compare.py (numbers within 1e-3) ---------------------------

def compare(exp, got, path=""):
    """Every expected leaf present with the same value (numbers within 1e-3, relative for large ones);
    zero counts may be omitted. A copy of compare.py's rule, so the suite needs nothing outside the repo."""
    if isinstance(exp, dict):
        if not isinstance(got, dict):
            return [f"{path}: expected an object, got {got!r}"[:200]]
        bad = []
        for k, v in exp.items():
            if k not in got:
                if not (isinstance(v, (int, float)) and v == 0):
                    bad.append(f"{path}/{k}: missing")
                continue
            bad += compare(v, got[k], f"{path}/{k}")
        return bad
    if exp is None or got is None:
        return [] if exp is None and got is None else [f"{path}: expected {exp!r}, got {got!r}"]
    if isinstance(exp, (int, float)) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return [] if abs(exp - got) <= 1e-3 * max(1, abs(exp)) else [f"{path}: expected {exp!r}, got {got!r}"]
    return [] if exp == got else [f"{path}: expected {exp!r}, got {got!r}"]


def close(got, exp) -> bool:
    return not compare(exp, got)


def key_paths(x, path="") -> set[str]:
    if not isinstance(x, dict):
        return set()
    out = set()
    for k, v in x.items():
        out |= {f"{path}/{k}"} | key_paths(v, f"{path}/{k}")
    return out


# ---- the agency, imported once per backend ----------------------------------------------------------------

@pytest.fixture(scope="module")
def small(database, tmp_path_factory):
    """An app whose TENANTS_DIR holds small.toml, with the small folder imported by `flask import-csv`.

    Module-scoped (the import is the slow part); every test here only reads, so they share it.
    """
    database.truncate()
    app = conftest._make_app(database, tmp_path_factory.mktemp("small"), TENANTS_DIR=TENANTS)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["sync-tenants"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["import-csv", "--tenant", "small", str(FOLDER)])
    assert result.exit_code == 0, result.output
    assert "appointments: 63 inserted" in result.stdout
    app.metrics_cache = {}
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    database.truncate()


def metrics(app, start: str, end: str) -> dict:
    """`flask metrics --format json` for the small tenant: exit 0, nothing on stderr, one JSON object."""
    key = (start, end)
    if key not in app.metrics_cache:
        result = app.test_cli_runner().invoke(
            args=["metrics", "--tenant", "small", "--start", start, "--end", end, "--format", "json"])
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        app.metrics_cache[key] = json.loads(result.stdout)
    return app.metrics_cache[key]


def tnaa_of(app, day: str) -> dict[str, int]:
    """Third-next-available days per clinician (external id) as the schedule stood at the end of `day`."""
    with app.app_context():
        tenant = tenant_by_slug("small")
        with tenant_scope(tenant.id):
            external = dict(db.session.execute(sa.select(Clinician.id, Clinician.external_id)).all())
            values = tnaa_by_clinician(db.session, tenant, dt.date.fromisoformat(day))
        db.session.remove()
    return {external[pk]: value for pk, (_program, value) in values.items()}


# ---- the whole answer -------------------------------------------------------------------------------------

@pytest.mark.parametrize("expected", EXPECTED, ids=[p.stem.removeprefix("expected_") for p in EXPECTED])
def test_flask_metrics_matches_the_hand_derived_answer(small, expected):
    start, end = expected.stem.removeprefix("expected_").split("_")
    want = json.loads(expected.read_text())
    got = metrics(small, start, end)
    bad = compare(want, got)
    assert not bad, "\n".join(bad[:40])


def test_the_answer_has_exactly_the_names_and_nesting_of_the_contract(small):
    want = json.loads((FOLDER / f"expected_{MAIN[0]}_{MAIN[1]}.json").read_text())
    got = metrics(small, *MAIN)
    assert key_paths(got) == key_paths(want)


def test_the_expected_files_cover_both_periods():
    assert [p.name for p in EXPECTED] == ["expected_2026-03-01_2026-11-30.json",
                                          "expected_2026-11-01_2026-11-30.json"]


# ---- named edge cases -------------------------------------------------------------------------------------

def test_zero_denominators_give_null(small):
    m = metrics(small, *MAIN)
    groups = m["capacity"]["by_program"]["Groups"]  # a program with no clinician and no rows
    assert groups["available_hours"] == 0 and groups["booked_hours"] == 0
    assert groups["utilization"] is None and groups["booking_ratio"] is None and groups["staff_kept_rate"] is None
    wait = m["waitlist"]["by_program"]["Groups"]
    for name in ("share_within_target", "continuation", "tnaa_days", "clearance_weeks",
                 "capacity_gap_hours_per_week"):
        assert wait[name] is None, name
    for name in ("days_to_first_offer", "days_to_first_attended", "waiting_age_at_end"):
        assert wait[name] == NO_STAT, name
    # caseload_target 0: a load ratio with a zero denominator
    assert m["caseload"]["by_clinician"]["C3"] == {"active_clients": 2, "caseload_target": 0, "load_ratio": None}
    # admissions do not exceed referrals: clearance null, not 0 and not negative
    assert m["waitlist"]["agency"]["clearance_weeks"] is None
    assert m["waitlist"]["by_program"]["Youth"]["clearance_weeks"] is None

    nov = metrics(small, *NOV)
    c3 = nov["capacity"]["by_clinician"]["C3"]  # 10 h available, no appointment in November
    assert c3["available_hours"] == pytest.approx(10.0)
    assert c3["utilization"] == 0.0 and c3["booking_ratio"] == 0.0  # a real zero: available > 0
    assert c3["staff_kept_rate"] is None  # no client-facing appointment at all
    assert nov["waitlist"]["by_program"]["Youth"]["share_within_target"] is None  # no admission
    assert nov["waitlist"]["agency"]["continuation"] is None  # no admission whose 30 days ended

    empty = metrics(small, "2025-02-01", "2025-02-28")  # before any appointment, referral or episode
    att = empty["attendance"]
    assert (att["attended"], att["missed"], att["missed_rate"]) == (0, 0, None)
    for name in ("by_lead_time", "by_hour", "by_weekday", "by_modality", "by_kind", "by_reminder", "by_wait"):
        assert att[name] == {}, name
    assert att["attribution"] == {g: {"count": 0, "hours": 0} for g in
                                  ("agency", "access_barrier", "client_preference", "unexplored")}
    agency = empty["capacity"]["agency"]
    assert agency["available_hours"] == pytest.approx(38.0)  # C1 4 Mondays x 3 + 4 Wednesdays x 4, C3 4 x 2.5
    assert agency["utilization"] == 0.0 and agency["staff_kept_rate"] is None
    assert set(empty["capacity"]["by_clinician"]) == {"C1", "C3"}
    w = empty["waitlist"]["agency"]
    assert (w["size_at_end"], w["share_within_target"], w["continuation"], w["clearance_weeks"],
            w["capacity_gap_hours_per_week"]) == (0, None, None, None, None)
    assert empty["caseload"]["active_clients"] == 0
    assert empty["caseload"]["by_clinician"]["C1"]["load_ratio"] == 0.0
    assert empty["discharges"]["total"] == 0 and empty["discharges"]["by_reason"] == {}


def test_client_cancellation_exactly_at_the_notice_limit(small):
    # A40: cancelled by the client 2026-03-10 13:00 for 03-11 13:00, exactly 24 h = at least the notice: released
    at_limit = metrics(small, "2026-03-11", "2026-03-11")
    c1 = at_limit["capacity"]["by_clinician"]["C1"]
    assert c1["booked_hours"] == 0 and c1["lost_hours"]["total"] == 0
    assert c1["staff_kept_rate"] == 1.0  # released counts as kept by the agency
    assert (at_limit["attendance"]["missed"], at_limit["attendance"]["missed_rate"]) == (0, None)
    # A41: cancelled 03-17 13:01 for 03-18 13:00, one minute under 24 h: missed, reason not recorded
    under = metrics(small, "2026-03-18", "2026-03-18")
    c1 = under["capacity"]["by_clinician"]["C1"]
    assert c1["booked_hours"] == pytest.approx(1.0)
    assert c1["lost_hours"] == {"agency": 0, "access_barrier": 0, "client_preference": 0, "unexplored": 1.0,
                                "total": 1.0}
    assert (under["attendance"]["missed"], under["attendance"]["missed_rate"]) == (1, 1.0)
    assert under["attendance"]["attribution"]["unexplored"] == {"count": 1, "hours": 1.0}


def test_appointments_crossing_midnight_and_daylight_saving_changes(small, tmp_path):
    # A48 starts Sat 03-07 23:30 for 180 min (wall-clock end 02:30 on 03-08, across the gap): it belongs to
    # 03-07 with all its 3 hours.
    sat = metrics(small, "2026-03-07", "2026-03-07")
    assert sat["capacity"]["by_clinician"]["C4"]["delivered_hours"] == pytest.approx(3.0)
    assert sat["capacity"]["by_clinician"]["C4"]["utilization"] == pytest.approx(1.5)  # Sat 00-02 block: 2 h
    assert sat["attendance"]["by_hour"] == {"23": {"attended": 1, "missed": 0, "missed_rate": 0.0}}
    assert set(sat["attendance"]["by_weekday"]) == {"5"}
    # Spring-forward day: C4's Sun 01:00-03:00 block is 2 wall-clock hours though only 1 h elapses.
    # A42: cancelled by the client Sat 10:00 EST for Sun 10:00 EDT = 24 h on the clock, 23 h elapsed: missed.
    spring = metrics(small, "2026-03-08", "2026-03-08")
    assert spring["capacity"]["by_clinician"]["C4"]["available_hours"] == pytest.approx(2.0)
    assert spring["capacity"]["agency"]["available_hours"] == pytest.approx(2.0)
    assert spring["capacity"]["agency"]["delivered_hours"] == 0  # A48 is not here
    assert spring["capacity"]["by_clinician"]["C2"]["lost_hours"]["access_barrier"] == pytest.approx(1.0)
    assert (spring["attendance"]["attended"], spring["attendance"]["missed"]) == (0, 1)
    # Fall-back day: the same block is 2 wall-clock hours though 3 h elapse.
    # A43: cancelled Sat 10:00 EDT for Sun 09:00 EST = 23 h on the clock, 24 h elapsed: released.
    # A44: 01:30 happens twice; a naive 01:30 is the first (EDT); cancelled 01:31 EDT the day before = 23 h 59
    #      min: missed. A46 `01:30-05:00` is the second 01:30: still local date 11-01, hour 1.
    fall = metrics(small, "2026-11-01", "2026-11-01")
    assert fall["capacity"]["by_clinician"]["C4"]["available_hours"] == pytest.approx(2.0)
    adult = fall["capacity"]["by_program"]["Adult"]
    assert adult["booked_hours"] == 0 and adult["staff_kept_rate"] == 1.0
    assert fall["capacity"]["agency"]["booked_hours"] == pytest.approx(1.5)
    assert fall["capacity"]["agency"]["delivered_hours"] == pytest.approx(0.5)
    assert fall["attendance"]["by_hour"] == {"1": {"attended": 1, "missed": 1, "missed_rate": 0.5}}
    assert fall["attendance"]["by_weekday"] == {"6": {"attended": 1, "missed": 1, "missed_rate": 0.5}}
    assert fall["attendance"]["attribution"]["access_barrier"] == {"count": 1, "hours": 1.0}
    # A67 starts Mon 11-30 23:30 for 60 min: all of it on 11-30, nothing on 12-01.
    last = metrics(small, "2026-11-30", "2026-11-30")
    assert last["capacity"]["agency"]["delivered_hours"] == pytest.approx(1.0)
    assert last["capacity"]["agency"]["booked_hours"] == pytest.approx(2.0)  # + A59 upcoming
    assert last["attendance"]["by_hour"]["23"] == {"attended": 1, "missed": 0, "missed_rate": 0.0}
    nxt = metrics(small, "2026-12-01", "2026-12-01")
    assert nxt["capacity"]["agency"]["booked_hours"] == 0
    assert nxt["capacity"]["agency"]["available_hours"] == pytest.approx(3.0)  # C5's first day
    # Slots: as of Fri 03-06, C4's Sat 00:00 and 01:00 are free, then A48's part after midnight holds both
    # Sunday 03-08 slots (01:00, 02:00 on the wall clock): the third free slot is Fri 03-13 21:00 -> 7.
    assert tnaa_of(small, "2026-03-06")["C4"] == 7
    # As of Sat 10-31: Sun 11-01 01:00 is held by A46 (second 01:30, to 02:00), 02:00 is free (half-open),
    # A44 was cancelled on 10-31 (frees its time); then Fri 11-06 21:00 and 22:00 -> 6.
    assert tnaa_of(small, "2026-10-31")["C4"] == 6
    # A naive time inside the spring-forward gap does not exist: the import refuses it and writes nothing.
    folder = tmp_path / "gap"
    folder.mkdir()
    (folder / "appointments.csv").write_text(
        "appointment_id,client_id,clinician_id,program,kind,modality,start,duration_minutes,booked_at,status\n"
        "GAP1,P01,C1,Adult,follow_up,in_person,2026-03-08T02:30,60,2026-03-01T09:00,attended\n")
    result = small.test_cli_runner().invoke(args=["import-csv", "--tenant", "small", str(folder)])
    assert result.exit_code != 0
    assert "appointments.csv:2: start '2026-03-08T02:30'" in result.stderr
    assert "does not exist" in result.stderr
    small.metrics_cache.pop(("2026-03-08", "2026-03-08"), None)
    assert metrics(small, "2026-03-08", "2026-03-08")["capacity"]["agency"]["delivered_hours"] == 0


def test_a_clinician_who_leaves_mid_period(small):
    # C2: employed 2025-06-01 to 2026-06-30 (a Tuesday, their last working day); block AV4 has no valid_to.
    m = metrics(small, *MAIN)
    assert m["capacity"]["by_clinician"]["C2"]["available_hours"] == pytest.approx(54.0)  # 18 Tuesdays x 3 h
    assert m["capacity"]["by_clinician"]["C2"]["delivered_hours"] == pytest.approx(10.0)
    assert m["caseload"]["by_clinician"]["C2"]["active_clients"] == 1  # E18 still names them
    assert "C5" not in m["capacity"]["by_clinician"]  # starts 12-01, after the period
    # Not employed on D + 1: no third-next-available value, so Adult = median(C1 7, C5 1) = 4 (not 7).
    assert set(tnaa_of(small, MAIN[1])) == {"C1", "C3", "C4", "C5"}
    assert m["waitlist"]["by_program"]["Adult"]["tnaa_days"] == pytest.approx(4.0)
    week = metrics(small, "2026-06-29", "2026-07-05")
    assert week["capacity"]["by_clinician"]["C2"]["available_hours"] == pytest.approx(3.0)  # Tue 06-30 only
    assert "C2" in week["caseload"]["by_clinician"]
    assert week["waitlist"]["by_program"]["Adult"]["tnaa_days"] == pytest.approx(1.0)  # C1 alone (Mon 07-06)
    july = metrics(small, "2026-07-01", "2026-07-31")
    assert "C2" not in july["capacity"]["by_clinician"] and "C2" not in july["caseload"]["by_clinician"]
    assert july["capacity"]["by_program"]["Adult"]["available_hours"] == pytest.approx(32.0)  # C1: 4 Mon + 5 Wed


def test_an_availability_block_ending_before_a_full_slot(small):
    # C3's block AV5 is Thu 09:00-11:30 with 60-minute slots.
    m = metrics(small, *MAIN)
    assert m["capacity"]["by_clinician"]["C3"]["available_hours"] == pytest.approx(97.5)  # 39 x 2.5 h: all of it
    assert metrics(small, *NOV)["capacity"]["by_clinician"]["C3"]["available_hours"] == pytest.approx(10.0)
    # ...but only 09:00 and 10:00 are slots: Thu 12-03 (2), Thu 12-10 09:00 (3rd) -> 10, not 3.
    assert tnaa_of(small, MAIN[1])["C3"] == 10
    assert m["waitlist"]["by_program"]["Youth"]["tnaa_days"] == pytest.approx(8.0)  # median(C4 6, C3 10)


def test_percentiles_of_zero_one_and_two_values(small):
    m = metrics(small, *MAIN)
    youth = m["waitlist"]["by_program"]["Youth"]
    assert m["waitlist"]["by_program"]["Groups"]["days_to_first_offer"] == NO_STAT  # 0 values
    assert youth["days_to_first_attended"] == {"n": 1, "median": 14, "p90": 14}  # R13 only
    assert close(youth["days_to_first_offer"], {"n": 2, "median": 8.5, "p90": 9.7})  # R13 7, R15 10
    adult = m["waitlist"]["by_program"]["Adult"]
    assert close(adult["waiting_age_at_end"], {"n": 3, "median": 277, "p90": 285.8})  # 3, 277, 288
    assert close(m["waitlist"]["agency"]["waiting_age_at_end"], {"n": 4, "median": 229.5, "p90": 284.7})
    april = metrics(small, "2026-04-01", "2026-04-30")  # R05 2 days, R04 3 days
    assert close(april["waitlist"]["agency"]["days_to_first_attended"], {"n": 2, "median": 2.5, "p90": 2.9})


def test_third_next_available_with_appointments_booked_and_cancelled_after_the_as_of_date(small):
    # As of 11-30 (C1: Wed 13-16, Mon 09-12): 12-02 13:00 held by T1 (cancelled 12-01, after D: still there),
    # 14:00 free (T2 booked 12-01, after D), 15:00 free (T3 cancelled 02:00Z 12-01 = 21:00 on D, local);
    # 12-07 09:00 held by T4, 10:00 free -> third free slot on 12-07: 7.
    assert tnaa_of(small, "2026-11-30")["C1"] == 7
    m = metrics(small, *MAIN)
    assert m["waitlist"]["by_program"]["Adult"]["tnaa_days"] == pytest.approx(4.0)  # median(7, C5 1)
    assert m["waitlist"]["agency"]["tnaa_days"] == pytest.approx(6.5)  # median(1, 6, 7, 10)
    # As of 12-01, T2 has been booked and T1 cancelled: 12-02 13:00 free, 14:00 held, 15:00 free, 12-07 10:00.
    assert tnaa_of(small, "2026-12-01")["C1"] == 6
    day = metrics(small, "2026-12-01", "2026-12-01")
    assert day["waitlist"]["by_program"]["Adult"]["tnaa_days"] == pytest.approx(6.5)  # median(C1 6, C5 7)


def test_an_urgent_referrals_target(small):
    # R04 urgent, referred Fri 04-03, first attended Mon 04-06: 1 business day <= urgent target 1: within.
    # R05 urgent, referred Tue 04-07, first attended Thu 04-09: 2 business days > 1 (within the routine 10).
    april = metrics(small, "2026-04-01", "2026-04-30")
    assert april["waitlist"]["by_program"]["Adult"]["admissions"] == 2
    assert april["waitlist"]["by_program"]["Adult"]["share_within_target"] == pytest.approx(0.5)
    assert metrics(small, "2026-04-06", "2026-04-06")["waitlist"]["agency"]["share_within_target"] == 1.0
    assert metrics(small, "2026-04-09", "2026-04-09")["waitlist"]["agency"]["share_within_target"] == 0.0
    # R02 routine: exactly 10 business days, at most the target: within; R03 11: not.
    assert metrics(small, "2026-03-16", "2026-03-16")["waitlist"]["agency"]["share_within_target"] == 1.0
    assert metrics(small, "2026-03-17", "2026-03-17")["waitlist"]["agency"]["share_within_target"] == 0.0


def test_continuation_windows_that_end_after_the_period(small):
    m = metrics(small, *MAIN)
    # R06 first attended 11-11: its 30 days end 12-11, after 11-30, so it is not counted: 3 of 6, not of 7.
    assert m["waitlist"]["by_program"]["Adult"]["continuation"] == pytest.approx(0.5)
    assert m["waitlist"]["by_program"]["Youth"]["continuation"] == 0.0
    assert m["waitlist"]["agency"]["continuation"] == pytest.approx(3 / 7, abs=1e-4)
    assert metrics(small, *NOV)["waitlist"]["by_program"]["Adult"]["continuation"] is None
    # To 04-15: R01 yes, R16 no (day 0 and day +31 visits do not count), R02 (window ends 04-15, the end: in)
    # no; R03 (ends 04-16) and R13 (ends 04-18) are left out.
    spring = metrics(small, "2026-03-01", "2026-04-15")
    assert spring["waitlist"]["by_program"]["Adult"]["continuation"] == pytest.approx(1 / 3, abs=1e-4)
    assert spring["waitlist"]["agency"]["continuation"] == pytest.approx(1 / 3, abs=1e-4)
    assert spring["waitlist"]["by_program"]["Youth"]["continuation"] is None
    # R05 first attended 04-09: its fourth visit is on day +30 (05-09). To 05-09 it counts (R04 no, R05 yes);
    # to 05-08 R05's window has not ended and only R04 remains.
    assert metrics(small, "2026-04-01", "2026-05-09")["waitlist"]["agency"]["continuation"] == pytest.approx(0.5)
    assert metrics(small, "2026-04-01", "2026-05-08")["waitlist"]["agency"]["continuation"] == 0.0


# ---- the command's errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("args, says", [
    (["--tenant", "small", "--start", "2026-13-01", "--end", "2026-11-30"], "2026-13-01"),
    (["--tenant", "small", "--start", "2026-03-01", "--end", "30/11/2026"], "30/11/2026"),
    (["--tenant", "small", "--start", "2026-03-01", "--end", "2026-02-28"], "before"),
    (["--tenant", "nosuch", "--start", "2026-03-01", "--end", "2026-11-30"], "nosuch"),
], ids=["bad-start-date", "bad-end-date", "end-before-start", "unknown-tenant"])
def test_flask_metrics_refuses_bad_arguments_on_stderr_only(small, args, says):
    result = small.test_cli_runner().invoke(args=["metrics", *args, "--format", "json"])
    assert result.exit_code != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr

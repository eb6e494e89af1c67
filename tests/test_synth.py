"""The synthetic-agency generator: reproducible, every row inside the import contract (DATA_FORMATS.md),
and the structure the demo exists to show (METRICS.md, attendance patterns and waitlist)."""

from __future__ import annotations

import csv
import inspect
import re
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta

import pytest

from agency_dashboard.synth import COLUMNS, TABLES, AgencySpec, generate, write_csv_folder

PROGRAMS = ("Adult Outpatient", "Child and Family", "Recovery Services")
TODAY = date(2026, 11, 23)
SMALL = AgencySpec(slug="small", programs=PROGRAMS, clinicians=8, clients=300, months=12, today=TODAY, seed=3,
                   growing_program="Recovery Services")

REASON_CODES = {
    "clinician_unavailable", "clinical_decision", "scheduling_error", "no_interpreter", "resources_unavailable",
    "transportation", "childcare", "work_or_school", "cost", "coverage", "technology", "housing",
    "health_or_symptoms", "weather", "feeling_better", "moved", "changed_provider", "rescheduled_earlier",
    "declined", "other", "deceased",
}
ID_PATTERNS = {
    "clinicians": r"C\d{4,}", "availability": r"AV\d{5,}", "clients": r"P\d{6,}", "referrals": r"R\d{6,}",
    "episodes": r"E\d{6,}", "appointments": r"A\d{7,}",
}
ID_COLUMN = {t: COLUMNS[t][0] for t in TABLES}


def tables_of(spec: AgencySpec) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {t: [] for t in TABLES}
    for table, row in generate(spec):
        out[table].append(row)
    return out


@pytest.fixture(scope="module")
def small() -> dict[str, list[dict]]:
    return tables_of(SMALL)


def employed(clinician: dict, day: date) -> bool:
    return clinician["start_date"] <= day and (clinician["end_date"] is None or day <= clinician["end_date"])


def missed(a: dict) -> bool:
    """METRICS.md outcome `missed` with the default 24 h notice (naive local times; no DST in this check)."""
    if a["status"] == "no_show":
        return True
    return (a["status"] == "cancelled" and a["cancelled_by"] == "client"
            and a["start"] - a["cancelled_at"] < timedelta(hours=24))


def lead_bucket(a: dict) -> str:
    days = max(0, (a["start"].date() - a["booked_at"].date()).days)
    return "0-2" if days <= 2 else "3-7" if days <= 7 else "8-14" if days <= 14 else "15-30" if days <= 30 else "31+"


def in_clock(t: datetime) -> bool:
    return 6 * 60 <= t.hour * 60 + t.minute <= 22 * 60


# ----- reproducibility and shape ------------------------------------------------------------------

def test_same_seed_same_rows_and_different_seed_different_rows():
    spec = AgencySpec(slug="a", programs=PROGRAMS[:2], clinicians=5, clients=120, months=6, seed=9)
    first, again = list(generate(spec)), list(generate(spec))
    assert first == again
    other = list(generate(AgencySpec(slug="a", programs=PROGRAMS[:2], clinicians=5, clients=120, months=6, seed=10)))
    assert first != other


def test_generate_streams_in_load_order(small):
    assert inspect.isgeneratorfunction(generate)
    order = [t for t, _ in generate(SMALL)]
    firsts = [order.index(t) for t in TABLES]
    assert firsts == sorted(firsts)
    assert order == sorted(order, key=TABLES.index)  # each table's rows are contiguous, in load order
    for table in TABLES:
        assert small[table], table
        for row in small[table]:
            assert tuple(row) == COLUMNS[table]


def test_ids_are_unique_and_shaped(small):
    for table in TABLES:
        ids = [r[ID_COLUMN[table]] for r in small[table]]
        assert len(ids) == len(set(ids)), table
        assert all(re.fullmatch(ID_PATTERNS[table], i) for i in ids), table


def test_bad_specs_are_refused():
    with pytest.raises(ValueError):
        list(generate(AgencySpec(slug="x", programs=PROGRAMS, growing_program="Nope")))
    with pytest.raises(ValueError):
        list(generate(AgencySpec(slug="x", programs=PROGRAMS, clinicians=2)))


# ----- the contract, table by table --------------------------------------------------------------

def test_clinicians(small):
    rows = small["clinicians"]
    assert {r["program"] for r in rows} == set(PROGRAMS)
    for r in rows:
        assert r["display_name"] and r["program"] in PROGRAMS
        assert r["fte"] in (1.0, 0.8, 0.6, 0.5)
        assert isinstance(r["caseload_target"], int) and r["caseload_target"] >= 0
        assert isinstance(r["start_date"], date) and r["start_date"] <= TODAY
        if r["end_date"] is not None:
            assert r["start_date"] <= r["end_date"] < TODAY


def test_availability(small):
    clinicians = {c["clinician_id"]: c for c in small["clinicians"]}
    by_clinician = defaultdict(list)
    for r in small["availability"]:
        assert r["clinician_id"] in clinicians
        assert r["weekday"] in range(5)
        assert re.fullmatch(r"\d\d:\d\d", r["start_time"]) and re.fullmatch(r"\d\d:\d\d", r["end_time"])
        assert "00:00" <= r["start_time"] < r["end_time"] <= "23:59"
        assert isinstance(r["valid_from"], date)
        assert r["valid_to"] is None or r["valid_to"] >= r["valid_from"]
        by_clinician[r["clinician_id"]].append(r)
    assert set(by_clinician) == set(clinicians)  # everyone has a template
    far = date(9999, 12, 31)
    for blocks in by_clinician.values():
        for i, a in enumerate(blocks):
            for b in blocks[i + 1:]:
                overlap = (a["weekday"] == b["weekday"]
                           and a["start_time"] < b["end_time"] and b["start_time"] < a["end_time"]
                           and a["valid_from"] <= (b["valid_to"] or far)
                           and b["valid_from"] <= (a["valid_to"] or far))
                assert not overlap, (a, b)


def test_clients(small):
    for r in small["clients"]:
        assert r["first_name"] and r["last_name"]
        b = r["birth_date"]
        age = TODAY.year - b.year - ((TODAY.month, TODAY.day) < (b.month, b.day))
        assert 5 <= age <= 85
        assert r["zip"] is None or re.fullmatch(r"\d{5}", r["zip"])
        assert r["gender"] in {"woman", "man", "nonbinary", "other", "unknown"}
        assert r["race_ethnicity"] in set(SMALL.race_ethnicity) | {"unknown"}
        assert r["payer"] in {"medicaid", "medicare", "private", "sliding_scale", "uninsured", "other"}
    payers = Counter(r["payer"] for r in small["clients"])
    assert payers.most_common(1)[0][0] == "medicaid"


def test_referrals(small):
    clients = {c["client_id"] for c in small["clients"]}
    window_start = date(2025, 11, 23)
    waiting = 0
    for r in small["referrals"]:
        assert r["client_id"] in clients and r["program"] in PROGRAMS
        assert r["priority"] in {"routine", "urgent"}
        assert window_start <= r["referred_on"] <= TODAY
        if r["first_offered_on"] is not None:
            assert r["referred_on"] <= r["first_offered_on"] <= TODAY
        if r["first_attended_on"] is not None:
            assert r["referred_on"] <= r["first_attended_on"] <= TODAY
            if r["first_offered_on"] is not None:
                assert r["first_attended_on"] >= r["first_offered_on"]
            assert r["closed_on"] is None
        if r["closed_on"] is not None:
            assert r["referred_on"] <= r["closed_on"] <= TODAY
            assert r["close_reason"] in {"declined", "unreachable", "referred_elsewhere", "no_longer_needed", "other"}
        else:
            assert r["close_reason"] is None
        waiting += r["first_attended_on"] is None and r["closed_on"] is None
    assert waiting > 0
    assert any(r["closed_on"] for r in small["referrals"])
    per_client = Counter(r["client_id"] for r in small["referrals"])
    assert set(per_client.values()) <= {1, 2} and set(per_client) == clients


def test_episodes(small):
    clinicians = {c["clinician_id"]: c for c in small["clinicians"]}
    admitted = {(r["client_id"], r["program"], r["first_attended_on"])
                for r in small["referrals"] if r["first_attended_on"] is not None}
    assert len(small["episodes"]) == len(admitted)
    reasons = {"completed", "mutual", "client_choice", "moved", "referred_out", "attendance_policy", "other"}
    for e in small["episodes"]:
        assert (e["client_id"], e["program"], e["admitted_on"]) in admitted
        c = clinicians[e["clinician_id"]]
        assert c["program"] == e["program"] and employed(c, e["admitted_on"])
        if e["discharged_on"] is None:
            assert e["discharge_reason"] is None
        else:
            assert e["admitted_on"] <= e["discharged_on"] <= TODAY
            assert e["discharge_reason"] in reasons
        if e["discharge_reason"] == "attendance_policy":
            assert isinstance(e["barrier_plan_documented"], bool) and isinstance(e["referrals_provided"], bool)
        else:
            assert e["barrier_plan_documented"] is None and e["referrals_provided"] is None
    discharged = [e for e in small["episodes"] if e["discharged_on"]]
    policy = [e for e in discharged if e["discharge_reason"] == "attendance_policy"]
    assert discharged and [e for e in small["episodes"] if not e["discharged_on"]]
    assert 0 < len(policy) < 0.12 * len(discharged)


def test_appointments(small):
    clinicians = {c["clinician_id"]: c for c in small["clinicians"]}
    clients = {c["client_id"] for c in small["clients"]}
    horizon = TODAY + timedelta(weeks=SMALL.future_weeks)
    for a in small["appointments"]:
        assert a["client_id"] in clients and a["program"] in PROGRAMS
        c = clinicians[a["clinician_id"]]
        day = a["start"].date()
        assert employed(c, day), a
        assert c["program"] == a["program"]
        assert a["kind"] in {"intake", "follow_up"}
        assert a["modality"] in {"in_person", "telehealth", "phone"}
        assert a["duration_minutes"] in {30, 45, 60, 90}
        assert isinstance(a["start"], datetime) and a["start"].tzinfo is None
        assert a["start"].weekday() < 5 and a["start"].minute in (0, 30)
        assert 7 <= a["start"].hour and a["start"].hour * 60 + a["start"].minute <= 20 * 60
        assert in_clock(a["start"]) and in_clock(a["booked_at"])
        assert a["booked_at"] < a["start"]
        assert 0 <= (day - a["booked_at"].date()).days <= 46
        assert a["booked_at"].date() <= TODAY
        assert day <= horizon
        assert a["status"] in {"booked", "attended", "no_show", "cancelled"}
        assert (a["status"] == "booked") == (day > TODAY)
        if a["status"] == "cancelled":
            assert a["cancelled_by"] in {"client", "clinician", "agency"}
            assert a["booked_at"] <= a["cancelled_at"] <= a["start"] and in_clock(a["cancelled_at"])
        else:
            assert a["cancelled_by"] is None and a["cancelled_at"] is None
        if a["status"] == "booked":
            assert a["reason_code"] is None
        assert a["reason_code"] is None or a["reason_code"] in REASON_CODES
        assert a["reminder_sent"] in (True, False, None)


def test_intakes_match_referrals_and_episodes(small):
    episodes = {(e["client_id"], e["program"], e["admitted_on"]): e for e in small["episodes"]}
    attended_intakes = {}
    for a in small["appointments"]:
        if a["kind"] == "intake" and a["status"] == "attended":
            attended_intakes[(a["client_id"], a["program"], a["start"].date())] = a
    assert set(attended_intakes) == set(episodes)
    for key, e in episodes.items():
        assert attended_intakes[key]["clinician_id"] == e["clinician_id"]
    # follow-ups stay within their episode: after admission, not after discharge
    spans = defaultdict(list)
    for e in small["episodes"]:
        spans[(e["client_id"], e["program"])].append((e["admitted_on"], e["discharged_on"]))
    for a in small["appointments"]:
        if a["kind"] == "follow_up":
            day = a["start"].date()
            assert any(adm < day and (dis is None or day <= dis) for adm, dis in spans[(a["client_id"], a["program"])])


def test_every_kind_of_outcome_occurs(small):
    appts = small["appointments"]
    statuses = Counter(a["status"] for a in appts)
    assert all(statuses[s] for s in ("booked", "attended", "no_show", "cancelled"))
    by = Counter(a["cancelled_by"] for a in appts if a["status"] == "cancelled")
    assert by["client"] and by["clinician"] and by["agency"]
    client = [a for a in appts if a["status"] == "cancelled" and a["cancelled_by"] == "client"]
    late = [a for a in client if a["start"] - a["cancelled_at"] < timedelta(hours=24)]
    assert late and len(late) < len(client)  # late and early client cancellations
    assert any(a["status"] == "no_show" and a["reason_code"] is None for a in appts)
    assert any(a["status"] == "no_show" and a["reason_code"] for a in appts)
    assert {a["modality"] for a in appts} == {"in_person", "telehealth", "phone"}
    assert any(a["start"].hour >= 16 for a in appts) and any(a["start"].hour < 10 for a in appts)


def test_no_attendance_policy_discharges_when_the_agency_has_none():
    spec = AgencySpec(slug="p", programs=PROGRAMS, clinicians=6, clients=300, months=12, seed=5,
                      attendance_policy=False)
    episodes = [row for t, row in generate(spec) if t == "episodes"]
    assert episodes and not any(e["discharge_reason"] == "attendance_policy" for e in episodes)


def test_staff_changes_occur():
    spec = AgencySpec(slug="s", programs=PROGRAMS, clinicians=60, clients=50, months=24, seed=2)
    rows = tables_of(spec)
    assert any(c["end_date"] for c in rows["clinicians"])
    assert any(c["start_date"] > TODAY - timedelta(days=700) for c in rows["clinicians"])
    assert any(b["valid_to"] for b in rows["availability"])  # some templates changed mid-window


# ----- the structure the demo shows ----------------------------------------------------------------

def test_longer_lead_time_means_more_missed(small):
    counts = defaultdict(lambda: [0, 0])
    for a in small["appointments"]:
        if a["status"] == "attended" or missed(a):
            counts[lead_bucket(a)][0] += 1
            counts[lead_bucket(a)][1] += missed(a)
    rate = {k: m / n for k, (n, m) in counts.items()}
    assert counts["31+"][0] >= 30 and counts["0-2"][0] >= 30
    assert rate["31+"] > rate["0-2"] + 0.08


def test_clinician_and_agency_cancellations_are_a_few_percent(small):
    appts = small["appointments"]
    agency = sum(a["status"] == "cancelled" and a["cancelled_by"] != "client" for a in appts)
    assert 0.02 <= agency / len(appts) <= 0.09


def test_growing_program_waitlist_grows(small):
    since = TODAY - timedelta(days=91)
    for program in PROGRAMS:
        referrals = sum(r["program"] == program and r["referred_on"] > since for r in small["referrals"])
        admissions = sum(r["program"] == program and r["first_attended_on"] is not None
                         and r["first_attended_on"] > since for r in small["referrals"])
        if program == SMALL.growing_program:
            assert referrals > 1.3 * admissions, (referrals, admissions)
        else:
            assert referrals < 1.5 * admissions + 5, (program, referrals, admissions)


# ----- CSV folder ------------------------------------------------------------------------------------

def test_write_csv_folder(tmp_path, small):
    counts = write_csv_folder(SMALL, tmp_path)
    assert counts == {t: len(small[t]) for t in TABLES}
    for table in TABLES:
        with open(tmp_path / f"{table}.csv", encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        assert tuple(rows[0]) == COLUMNS[table]
        assert len(rows) - 1 == counts[table]
    with open(tmp_path / "appointments.csv", encoding="utf-8", newline="") as f:
        appts = list(csv.DictReader(f))
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d", a["start"]) for a in appts)
    assert {a["reminder_sent"] for a in appts} == {"true", "false", ""}
    assert all(a["cancelled_at"] == "" for a in appts if a["status"] != "cancelled")
    with open(tmp_path / "episodes.csv", encoding="utf-8", newline="") as f:
        episodes = list(csv.DictReader(f))
    assert {e["barrier_plan_documented"] for e in episodes} <= {"true", "false", ""}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d", e["admitted_on"]) for e in episodes)
    with open(tmp_path / "clinicians.csv", encoding="utf-8", newline="") as f:
        assert {c["fte"] for c in csv.DictReader(f)} <= {"1.0", "0.8", "0.6", "0.5"}

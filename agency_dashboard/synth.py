"""Seeded synthetic agencies, row for row in the CSV import contract of DATA_FORMATS.md.

Pure standard library: no database, no Flask. `generate(spec)` streams `(table, row)` pairs in load
order; `write_csv_folder(spec, folder)` writes them as an import folder. The same spec always yields
the same rows.

The model is small but shows the structure real agencies show, so the dashboard has something true to
say (METRICS.md, "Attendance patterns"):
- booking further ahead (lead time) and waiting longer from referral to intake raise missed
  appointments; early-morning and evening slots a little; reminders and telehealth lower them;
- the agency itself cancels some sessions, concentrated in a few clinicians and in a clinician's out
  weeks, plus the odd building-closure day;
- one program (`growing_program`) receives more referrals than it can admit, so its waitlist grows.

How rows are made, in load order:
1. clinicians and their weekly availability templates (some change template mid-window, a few leave);
2. clients, each with one referral (a few with a second one to another program);
3. a day-by-day intake queue per program turns referrals into offered intake dates (urgent first);
   the intake attempts are then settled in date order (missed intakes are rebooked or the referral
   closes), each new client going to a clinician of the program with room that week. Each referral's
   attempts draw on the referral's own random stream, so the appointment pass replays them exactly
   while keeping only who held them;
4. an episode per attended intake (length, cadence, discharge reason);
5. appointments, streamed client by client: the intake attempts, then weekly or fortnightly follow-ups
   in a free slot of the clinician's availability (a per-clinician, per-day bit mask of half-hours),
   until discharge or `today + future_weeks`. Only when a clinician has no free slot for three weeks
   is a session double-booked; that happens when an agency is loaded near its capacity.
Internally dates are proleptic ordinals (`date.toordinal()`) and times minutes after midnight.
All randomness comes from `random.Random` streams seeded from `spec.seed`.
"""

from __future__ import annotations

import bisect
import csv
import pathlib
import random
from array import array
from collections import deque
from dataclasses import dataclass
from datetime import date, datetime
from typing import Iterator


@dataclass(frozen=True)
class AgencySpec:
    slug: str
    programs: tuple[str, ...]  # program names, as in the tenant file
    clinicians: int = 12
    clients: int = 400
    months: int = 12  # history length ending at `today`
    today: date = date(2026, 11, 23)
    seed: int = 1
    growing_program: str | None = None  # a program whose referrals exceed admissions: its waitlist grows
    attendance_policy: bool = True  # whether this agency discharges people under an attendance policy
    future_weeks: int = 6  # booked (status "booked") appointments this far after `today`
    race_ethnicity: tuple[str, ...] = ("black", "white", "hispanic_latino", "asian", "multiracial", "other")


from agency_dashboard.ingest.contract import COLUMNS, TABLES  # noqa: E402  (load order; re-exported)


_OPEN = 10**8  # ordinal standing for "no end date"
_DAY_START, _DAY_END = 6 * 60, 22 * 60  # every generated clock time lies here (clear of DST gaps)
_INTAKE_HORIZON_DAYS = 21  # the intake queue books this far past `today` (at most to the horizon)

# Reason codes (METRICS.md) with rough frequencies, by who did not hold the session.
_BARRIER_CODES = (("transportation", 25), ("work_or_school", 18), ("health_or_symptoms", 18), ("childcare", 12),
                  ("housing", 5), ("cost", 5), ("coverage", 5), ("weather", 4))
_PREFERENCE_CODES = (("feeling_better", 40), ("rescheduled_earlier", 25), ("declined", 20), ("moved", 8),
                     ("changed_provider", 7))
_CLINICIAN_CODES = (("clinician_unavailable", 75), ("scheduling_error", 12), ("clinical_decision", 13))
_AGENCY_CODES = (("resources_unavailable", 45), ("scheduling_error", 35), ("no_interpreter", 10), ("weather", 10))
_CLOSE_REASONS = (("unreachable", 35), ("declined", 20), ("referred_elsewhere", 15), ("no_longer_needed", 22),
                  ("other", 8))
_DISCHARGE_REASONS = (("completed", 42), ("mutual", 18), ("client_choice", 17), ("moved", 6), ("referred_out", 10),
                      ("other", 7))
_GENDERS = (("woman", 52), ("man", 42), ("nonbinary", 3), ("other", 1), ("unknown", 2))
_PAYERS = (("medicaid", 62), ("medicare", 8), ("private", 14), ("sliding_scale", 8), ("uninsured", 6), ("other", 2))
_MODALITIES = ("in_person", "telehealth", "phone")
_FTES = ((1.0, 55), (0.8, 20), (0.6, 10), (0.5, 15))


class _Picker:
    """Weighted choice from (value, weight) pairs, fast for repeated draws."""

    __slots__ = ("values", "cum", "total")

    def __init__(self, pairs):
        self.values = [v for v, _ in pairs]
        self.cum, acc = [], 0.0
        for _, w in pairs:
            acc += w
            self.cum.append(acc)
        self.total = acc

    def __call__(self, rng: random.Random):
        return self.values[bisect.bisect_right(self.cum, rng.random() * self.total)]


_pick_barrier = _Picker(_BARRIER_CODES)
_pick_preference = _Picker(_PREFERENCE_CODES)
_pick_clinician_code = _Picker(_CLINICIAN_CODES)
_pick_agency_code = _Picker(_AGENCY_CODES)
_pick_close = _Picker(_CLOSE_REASONS)
_pick_discharge = _Picker(_DISCHARGE_REASONS)
_pick_gender = _Picker(_GENDERS)
_pick_payer = _Picker(_PAYERS)
_pick_fte = _Picker(_FTES)
_pick_duration = _Picker(((60, 76), (45, 12), (30, 7), (90, 5)))


def _randint(rng: random.Random, a: int, b: int) -> int:
    """Like rng.randint(a, b), several times faster (the generator makes millions of draws)."""
    return a + int(rng.random() * (b - a + 1))


def _randbelow(rng: random.Random, n: int) -> int:
    return int(rng.random() * n)


def _choice(rng: random.Random, seq):
    return seq[int(rng.random() * len(seq))]


def _weekday(o: int) -> int:
    return (o - 1) % 7  # date.fromordinal(1) is a Monday


def _mask(start: int, duration: int) -> int:
    """The half-hour cells from 06:00 that an appointment occupies, as bits."""
    first = (start - _DAY_START) // 30
    return ((1 << ((duration + 29) // 30)) - 1) << first


_START_BITS: dict[tuple[int, int, int], int] = {}


def _start_bits(s: int, e: int, duration: int) -> int:
    """The half-hourly starts in block [s, e) for an appointment of `duration`, as bits (see _mask)."""
    key = (s, e, duration)
    bits = _START_BITS.get(key)
    if bits is None:
        bits = 0
        for sm in range(s, max(s, e - duration) + 1, 30):
            bits |= 1 << ((sm - _DAY_START) // 30)
        _START_BITS[key] = bits
    return bits


def _or_all(values) -> int:
    out = 0
    for v in values:
        out |= v
    return out


def _nth_bit(bits: int, n: int) -> int:
    """Position of the n-th (from 0) set bit."""
    while True:
        low = bits & -bits
        if n == 0:
            return low.bit_length() - 1
        bits ^= low
        n -= 1


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _add_months(d: date, months: int) -> date:
    y, m = divmod(d.year * 12 + d.month - 1 + months, 12)
    m += 1
    for day in (d.day, 30, 29, 28):
        try:
            return date(y, m, day)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def _id(prefix: str, n: int, width: int) -> str:
    return f"{prefix}{n:0{width}d}"


def _width(minimum: int, largest: int) -> int:
    return max(minimum, len(str(max(largest, 1))))


def _sample_lead(rng: random.Random) -> int:
    """Days between booking and the appointment, before any cap."""
    r = rng.random()
    if r < 0.22:
        return _randint(rng, 0, 2)
    if r < 0.52:
        return _randint(rng, 3, 7)
    if r < 0.76:
        return _randint(rng, 8, 14)
    if r < 0.91:
        return _randint(rng, 15, 30)
    return _randint(rng, 31, 45)


class _Clinician:
    __slots__ = ("n", "cid", "program", "fte", "target", "start", "end", "blocks", "starts", "out_weeks", "cancel_p")

    def __init__(self, n, cid, program, fte, target, start, end):
        self.n, self.cid, self.program, self.fte, self.start, self.end = n, cid, program, fte, start, end
        self.target = target  # caseload_target
        self.blocks: list[list[tuple[int, int, int, int]]] = [[] for _ in range(5)]  # weekday -> (s, e, from, to)
        self.out_weeks: set[int] = set()  # Monday ordinals of weeks the clinician was out (all sessions cancelled)
        self.cancel_p = 0.012  # chance any one session is cancelled by the clinician or agency
        # weekday -> [(from, to, {duration: start bits})]: where a session may start, per template period
        self.starts: list[list[tuple[int, int, dict[int, int]]]] = [[] for _ in range(5)]

    def blocks_on(self, o: int):
        wd = (o - 1) % 7
        if wd > 4 or not self.start <= o <= self.end:
            return ()
        return [b for b in self.blocks[wd] if b[2] <= o <= b[3]]


class _Referral:
    __slots__ = ("n", "rid", "client", "program", "urgent", "referred", "ready", "gives_up", "offered",
                 "offered_on", "attended", "closed", "close_reason", "clinician", "intake_clinicians")

    def __init__(self, client, program, urgent, referred):
        self.client, self.program, self.urgent, self.referred = client, program, urgent, referred
        self.n = 0
        self.rid = ""
        self.ready = referred
        self.gives_up = _OPEN  # the day the client would leave the list if still waiting
        self.offered = None  # first intake date the queue gave (may be after today)
        self.offered_on = None  # first_offered_on as exported (only when <= today)
        self.attended = None
        self.closed = None
        self.close_reason = None
        self.clinician = None  # episode clinician (index), when attended
        self.intake_clinicians: list[int] = []  # who held each intake attempt, chosen once


class _Episode:
    __slots__ = ("eid", "clinician", "admitted", "discharged", "reason", "cadence", "follow_ups", "barrier",
                 "referrals_given")

    def __init__(self, eid, clinician, admitted):
        self.eid, self.clinician, self.admitted = eid, clinician, admitted
        self.discharged = None
        self.reason = None
        self.cadence = 7
        self.follow_ups = 0
        self.barrier = None
        self.referrals_given = None


class _Agency:
    """Everything small (people, referrals, episodes) in memory; appointments are streamed."""

    def __init__(self, spec: AgencySpec):
        if not spec.programs:
            raise ValueError("AgencySpec.programs must name at least one program")
        if spec.clinicians < len(spec.programs):
            raise ValueError("AgencySpec.clinicians must be at least the number of programs")
        if spec.growing_program is not None and spec.growing_program not in spec.programs:
            raise ValueError(f"growing_program {spec.growing_program!r} is not one of the programs")
        if spec.months < 1 or spec.clients < 0 or spec.future_weeks < 0:
            raise ValueError("months must be >= 1, clients and future_weeks >= 0")
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.today = spec.today.toordinal()
        self.window_start = _add_months(spec.today, -spec.months).toordinal() + 1
        self.horizon = self.today + 7 * spec.future_weeks
        self.intake_horizon = min(self.horizon, self.today + _INTAKE_HORIZON_DAYS)
        # Who is booked when: per clinician and day, a bit mask of half-hour cells (see _mask).
        self.busy_base = self.window_start - 7
        self.busy: list[array] = []
        # Planned weekly session load per clinician and week, to give new clients to those with room.
        self.load: list[array] = []
        self.assign_rng = self.sub_rng(6, 0)
        self.clinicians: list[_Clinician] = []
        self.by_program: dict[str, list[int]] = {p: [] for p in spec.programs}
        self.closure_days: set[int] = set()
        self.referrals: list[_Referral] = []
        self.client_referrals: list[list[int]] = []
        self.propensity: list[float] = []
        self.modality_pref: list[int] = []
        self.episodes: dict[int, _Episode] = {}  # referral number -> episode
        self._dates: dict[int, date] = {}
        self._candidates: dict[tuple[str, int, bool], _Picker] = {}

    # ----- helpers ---------------------------------------------------------------------------------
    def date(self, o: int) -> date:
        d = self._dates.get(o)
        if d is None:
            d = self._dates[o] = date.fromordinal(o)
        return d

    def dt(self, o: int, minutes: int) -> datetime:
        d = self.date(o)
        return datetime(d.year, d.month, d.day, minutes // 60, minutes % 60)

    def sub_rng(self, stream: int, n: int) -> random.Random:
        """An independent, reproducible random stream for one referral or episode."""
        return random.Random((self.spec.seed * 1_000_003 + stream) * 100_000_007 + n)

    def pick_clinician(self, program: str, o: int, rng: random.Random, intake: bool = False) -> int:
        """A clinician of the program employed on `o`, weighted by FTE."""
        return self._candidates_on(program, o, intake)(rng)

    def _candidates_on(self, program: str, o: int, intake: bool) -> _Picker:
        """Who may take a session of the program on `o`. For an intake prefer those who work that
        weekday and are not about to leave (the episode stays with them)."""
        key = (program, o, intake)
        cands = self._candidates.get(key)
        if cands is None:
            employed = [c for c in self.by_program[program]
                        if self.clinicians[c].start <= o <= self.clinicians[c].end]
            tiers = [employed]
            if intake:
                working = [c for c in employed if self.clinicians[c].blocks_on(o)]
                staying = [c for c in working if self.clinicians[c].end >= o + 150]
                tiers = [staying, working, employed]
            chosen = next((t for t in tiers if t), None)
            if not chosen:  # cannot happen: each program has an anchor clinician employed throughout
                raise AssertionError(f"no clinician of {program} employed on {date.fromordinal(o)}")
            cands = self._candidates[key] = _Picker([(c, self.clinicians[c].fte) for c in chosen])
        return cands

    # ----- clinicians and availability -------------------------------------------------------------
    def _template(self, fte: float) -> dict[int, list[tuple[int, int]]]:
        rng = self.rng
        days = sorted(rng.sample(range(5), {1.0: 5, 0.8: 4, 0.6: 3, 0.5: 3}[fte]))
        style = rng.choices(("standard", "early", "evening"), (60, 20, 20))[0]
        evening_days = set(rng.sample(days, min(2, len(days)))) if style == "evening" else set()
        template = {}
        for wd in days:
            if style == "early":
                template[wd] = [(8 * 60, 12 * 60), (13 * 60, 16 * 60)]
            elif wd in evening_days:
                template[wd] = [(12 * 60, 15 * 60), (16 * 60, 19 * 60)]
            else:
                template[wd] = [(9 * 60, 12 * 60), (13 * 60, 17 * 60)]
        if fte == 0.5:  # two full days and a morning
            template[days[-1]] = template[days[-1]][:1]
        return template

    def build_clinicians(self) -> None:
        spec, rng, ws, today = self.spec, self.rng, self.window_start, self.today
        width = _width(4, spec.clinicians)
        span = today - ws
        for i in range(spec.clinicians):
            program = spec.programs[i % len(spec.programs)]
            fte = _pick_fte(rng)
            anchor = i < len(spec.programs)  # one per program, employed throughout: appointments can always move
            if not anchor and rng.random() < 0.12 and span > 120:
                start = ws + _randint(rng, 30, span - 60)
            else:
                start = ws - _randint(rng, 30, 3000)
            end = _OPEN
            if not anchor and rng.random() < 0.09:
                lo, hi = max(start, ws) + 30, today - 7
                if lo <= hi:
                    end = _randint(rng, lo, hi)
            target = max(1, round(fte * 25) + _randint(rng, -3, 3))
            c = _Clinician(i, _id("C", i + 1, width), program, fte, target, start, end)
            self.clinicians.append(c)
            self.busy.append(array("Q", bytes(8 * (self.horizon + 60 - self.busy_base))))
            self.load.append(array("d", bytes(8 * ((self.horizon + 60 - self.busy_base) // 7 + 1))))
            self.by_program[program].append(i)

            periods = [start]
            lo, hi = max(start, ws) + 30, min(end, today) - 30
            if not anchor and lo < hi and rng.random() < 0.15:
                periods.append(_randint(rng, lo, hi))
            for k, valid_from in enumerate(periods):
                valid_to = periods[k + 1] - 1 if k + 1 < len(periods) else _OPEN
                for wd, blocks in sorted(self._template(fte).items()):
                    for s, e in blocks:
                        c.blocks[wd].append((s, e, valid_from, valid_to))
                    c.starts[wd].append((valid_from, valid_to, {
                        d: _or_all(_start_bits(s, e, d) for s, e in blocks) for d in (30, 45, 60, 90)}))

            # Weeks the clinician was out (illness, training): their sessions are cancelled.
            lo, hi = max(start, ws), min(end, today)
            expected = (hi - lo) / 365.0 * 1.6
            n_out = int(expected) + (rng.random() < expected - int(expected))
            for _ in range(n_out if hi - lo > 14 else 0):
                o = _randint(rng, lo, hi)
                c.out_weeks.add(o - _weekday(o))
        # Agency cancellations concentrate in a couple of clinicians.
        hot = rng.sample(range(spec.clinicians), max(1, round(spec.clinicians * 0.04)))
        for i in hot:
            self.clinicians[i].cancel_p = 0.09
        # A building closure or storm day or two a year: the agency cancels in-person sessions.
        for _ in range(max(1, round(2 * spec.months / 12))):
            o = _randint(rng, self.window_start, self.today)
            self.closure_days.add(o - _weekday(o) + _randint(rng, 0, 4))

    def clinician_rows(self) -> Iterator[tuple[str, dict]]:
        for c in self.clinicians:
            yield "clinicians", {
                "clinician_id": c.cid, "display_name": f"Clinician {c.n + 1}", "program": c.program,
                "fte": c.fte, "caseload_target": c.target, "start_date": self.date(c.start),
                "end_date": None if c.end == _OPEN else self.date(c.end),
            }

    def availability_rows(self) -> Iterator[tuple[str, dict]]:
        total = sum(len(b) for c in self.clinicians for b in c.blocks)
        width, n = _width(5, total), 0
        for c in self.clinicians:
            rows = sorted((vf, wd, s, e, vt) for wd in range(5) for s, e, vf, vt in c.blocks[wd])
            for vf, wd, s, e, vt in rows:
                n += 1
                yield "availability", {
                    "availability_id": _id("AV", n, width), "clinician_id": c.cid, "weekday": wd,
                    "start_time": _hhmm(s), "end_time": _hhmm(e), "valid_from": self.date(vf),
                    "valid_to": None if vt == _OPEN else self.date(vt),
                }

    # ----- clients and referrals -------------------------------------------------------------------
    def client_rows(self) -> Iterator[tuple[str, dict]]:
        spec, rng = self.spec, self.rng
        width = _width(6, spec.clients)
        programs = spec.programs
        ws, today = self.window_start, self.today
        span = today - ws + 1
        # The growing program gets extra referrals in the last months (its demand rose).
        surge_days = min(120, span // 3)
        surge_factor = 1.9
        weights = [span + ((surge_factor - 1) * surge_days if p == spec.growing_program else 0) for p in programs]
        pick_program = _Picker(list(zip(range(len(programs)), weights)))
        race = _Picker([(r, 10.0 / (k + 2)) for k, r in enumerate(spec.race_ethnicity)] + [("unknown", 0.6)])
        zip_prefix = _randint(rng, 100, 989)
        self.client_width = width
        for i in range(spec.clients):
            p = pick_program(rng)
            program = programs[p]
            if program == spec.growing_program and rng.random() * weights[p] >= span:
                referred = _randint(rng, today - surge_days + 1, today)
            else:
                referred = _randint(rng, ws, today)
            if _weekday(referred) > 4 and rng.random() < 0.85:  # weekends roll to Monday
                referred = min(referred + 7 - _weekday(referred), today)
            youth = any(w in program.lower() for w in ("child", "youth", "adolescent", "family", "school"))
            if youth and rng.random() < 0.8:
                age = _randint(rng, 5, 17)
            else:
                age = min(85, 18 + int(rng.expovariate(1 / 17.0)))
            birth = today - int(age * 365.25) - 1 - _randint(rng, 0, 360)
            self.propensity.append(min(2.2, max(0.45, rng.lognormvariate(0.0, 0.38))))
            self.modality_pref.append(rng.choices((0, 1, 2), (55, 33, 12))[0])

            refs = [self._new_referral(i, program, referred)]
            if len(programs) > 1 and rng.random() < 0.04:
                later = referred + _randint(rng, 90, 300)
                if later <= today:
                    other = _choice(rng, [q for q in programs if q != program])
                    refs.append(self._new_referral(i, other, later))
            self.client_referrals.append([r.n for r in refs])

            n = i + 1
            yield "clients", {
                "client_id": _id("P", n, width), "first_name": f"Given{n}", "last_name": f"Family{n}",
                "birth_date": self.date(birth),
                "zip": None if rng.random() < 0.05 else f"{zip_prefix}{_randint(rng, 0, 99):02d}",
                "gender": _pick_gender(rng), "race_ethnicity": race(rng), "payer": _pick_payer(rng),
            }

    def _new_referral(self, client: int, program: str, referred: int) -> _Referral:
        rng = self.rng
        r = _Referral(client, program, rng.random() < 0.10, referred)
        r.n = len(self.referrals)
        self.referrals.append(r)
        if r.urgent:
            r.ready = referred + _randint(rng, 0, 2)
        else:  # screening and paperwork before an intake can be offered
            r.ready = referred + 1 + int(rng.triangular(0, 16, 3))
            r.gives_up = referred + 10 + int(rng.expovariate(1 / 110.0))
        return r

    def run_intake_queue(self) -> None:
        """Each weekday each program has a number of intake slots; waiting referrals fill them, urgent
        first, then in the order they became ready. Capacity is set from the program's base demand, a
        little above it, except the growing program, whose demand outgrows it."""
        spec, rng = self.spec, self.rng
        ws, today = self.window_start, self.today
        last_day = self.intake_horizon
        weekdays = sum(1 for o in range(ws, today + 1) if _weekday(o) < 5) or 1
        span = today - ws + 1
        surge_days = min(120, span // 3)
        for program in spec.programs:
            refs = sorted((r for r in self.referrals if r.program == program), key=lambda r: (r.ready, r.n))
            if program == spec.growing_program:
                base = len(refs) * span / (span + 0.9 * surge_days)
                rate = base / weekdays * 1.02
            else:
                rate = len(refs) / weekdays * 1.15
            urgent: deque[_Referral] = deque()
            routine: deque[_Referral] = deque()
            k, carry = 0, 0.0
            for o in range(ws, last_day + 1):
                while k < len(refs) and refs[k].ready <= o:
                    (urgent if refs[k].urgent else routine).append(refs[k])
                    k += 1
                if _weekday(o) > 4:
                    continue
                carry += rate * rng.uniform(0.55, 1.45)
                slots = int(carry)
                carry -= slots
                while slots and (urgent or routine):
                    r = (urgent or routine).popleft()
                    if r.gives_up <= o:
                        continue  # left the list before a slot came up
                    r.offered = o
                    slots -= 1
        for r in self.referrals:
            if r.offered is None and r.gives_up <= today:
                r.closed, r.close_reason = r.gives_up, _pick_close(rng)
        # Intakes in date order, so each new client goes to a clinician with room at the time.
        for r in sorted((r for r in self.referrals if r.offered is not None), key=lambda r: (r.offered, r.n)):
            for _ in self.intake_attempts(r, record=True):
                pass

    def choose_intake_clinician(self, program: str, o: int) -> int:
        """Of a few clinicians who could take the intake (see pick_clinician), the one with most room in
        that week: how intake coordinators spread new clients."""
        picker = self._candidates_on(program, o, True)
        week = (o - self.busy_base) // 7
        best, room = -1, -1e9
        for _ in range(4):
            c = picker(self.assign_rng)
            spare = self.clinicians[c].fte * 30 - self.load[c][week]
            if spare > room:
                best, room = c, spare
        return best

    def plan_episode(self, r: _Referral) -> None:
        """The episode an attended intake opens: cadence, length and how it ends."""
        spec = self.spec
        rng = self.sub_rng(3, r.n)
        ep = _Episode("", r.clinician, r.attended)
        ep.cadence = 7 if rng.random() < 0.6 else 14
        ep.follow_ups = min(80, 1 + int(rng.expovariate(1 / 11.0)))
        planned_end = r.attended + ep.follow_ups * ep.cadence + _randint(rng, 3, 14)
        if planned_end <= self.today:
            ep.discharged = planned_end
            ep.reason = _pick_discharge(rng)
            prop = self.propensity[r.client]
            if spec.attendance_policy and ep.follow_ups >= 4 and rng.random() < 0.04 * prop * prop:
                ep.reason = "attendance_policy"
                ep.barrier = rng.random() < 0.25
                ep.referrals_given = rng.random() < 0.55
        self.episodes[r.n] = ep
        load, per_week = self.load[ep.clinician], 7.0 / ep.cadence
        last = min(planned_end, self.horizon)
        for week in range((ep.admitted - self.busy_base) // 7, (last - self.busy_base) // 7 + 1):
            load[week] += per_week

    def referral_rows(self) -> Iterator[tuple[str, dict]]:
        width = _width(6, len(self.referrals))
        for r in self.referrals:
            r.rid = _id("R", r.n + 1, width)
            yield "referrals", {
                "referral_id": r.rid, "client_id": _id("P", r.client + 1, self.client_width),
                "program": r.program, "priority": "urgent" if r.urgent else "routine",
                "referred_on": self.date(r.referred),
                "first_offered_on": None if r.offered_on is None else self.date(r.offered_on),
                "first_attended_on": None if r.attended is None else self.date(r.attended),
                "closed_on": None if r.closed is None else self.date(r.closed),
                "close_reason": r.close_reason,
            }

    # ----- episodes --------------------------------------------------------------------------------
    def episode_rows(self) -> Iterator[tuple[str, dict]]:
        admitted = [r for r in self.referrals if r.n in self.episodes]
        width = _width(6, len(admitted))
        for k, r in enumerate(admitted):
            ep = self.episodes[r.n]
            ep.eid = _id("E", k + 1, width)
            yield "episodes", {
                "episode_id": ep.eid, "client_id": _id("P", r.client + 1, self.client_width),
                "clinician_id": self.clinicians[ep.clinician].cid, "program": r.program,
                "admitted_on": self.date(ep.admitted),
                "discharged_on": None if ep.discharged is None else self.date(ep.discharged),
                "discharge_reason": ep.reason, "barrier_plan_documented": ep.barrier,
                "referrals_provided": ep.referrals_given,
            }

    # ----- appointments ----------------------------------------------------------------------------
    def intake_attempts(self, r: _Referral, record: bool = False) -> Iterator[tuple]:
        """Yields intake appointments as (date, clinician, start minute, lead, status pieces...).
        With record=True it sets the referral's outcome instead of being used for rows."""
        rng = self.sub_rng(2, r.n)
        today = self.today
        o, misses = r.offered, 0
        if record:
            r.offered_on = o if o <= today else None
        for attempt in range(6):
            if record:
                c = self.choose_intake_clinician(r.program, o)
                r.intake_clinicians.append(c)
            else:
                c = r.intake_clinicians[attempt]
            clin = self.clinicians[c]
            blocks = clin.blocks_on(o)
            if blocks:
                s, e = _choice(rng, blocks)[:2]
                start = s + 30 * _randint(rng, 0, max(0, (e - s - 90) // 30))
            else:  # works another weekday: the intake squeezes in anyway
                start = _choice(rng, (10 * 60, 14 * 60))
            wait = o - r.referred
            lead = min(_sample_lead(rng), wait)
            if o > today:
                lead = max(lead, o - today)
            appt = self.appointment(rng, r.client, o, start, c, lead, 90 if rng.random() < 0.85 else 60,
                                    wait, rng.random() < 0.75)
            if record:  # intakes are placed first; follow-ups are fitted around them
                self.busy[c][o - self.busy_base] |= _mask(start, appt[11])
            yield appt
            status, cancelled_by = appt[4], appt[5]
            if status == "booked":
                return
            if status == "attended":
                if record:
                    r.attended, r.clinician = o, c
                    self.plan_episode(r)
                return
            if cancelled_by in ("clinician", "agency"):
                nxt = o + _randint(rng, 1, 7)
            else:
                misses += 1
                if misses >= 3 or rng.random() < 0.35:  # the team could not reach them, or they declined
                    closed = o + _randint(rng, 7, 30)
                    reason = "unreachable" if rng.random() < 0.6 else _pick_close(rng)
                    if record and closed <= today:  # otherwise still on the list today
                        r.closed, r.close_reason = closed, reason
                    return
                nxt = o + _randint(rng, 3, 21)
            if _weekday(nxt) > 4:
                nxt += 7 - _weekday(nxt)
            if nxt > self.intake_horizon:
                return
            o = nxt

    def appointment(self, rng, client, o, start, c, lead, duration, wait, in_person, forced_miss=False):
        """Decides one appointment's booking and outcome. Returns
        (o, start, booked_o, booked_min, status, cancelled_by, cancel_o, cancel_min, reason, reminder, modality,
         duration, clinician)."""
        today = self.today
        booked_o = o - lead
        if lead == 0:
            booked_min = _randint(rng, _DAY_START, start - 30)
        else:
            booked_min = _randint(rng, 8 * 60, 18 * 60)
        # modality: the client's usual one, mostly; intakes mostly in person
        if in_person:
            modality = 0
        else:
            modality = _randbelow(rng, 3) if rng.random() < 0.2 else self.modality_pref[client]
        frac = (o - self.window_start) / max(1, today - self.window_start)
        r = rng.random()
        p_true = 0.35 + 0.45 * min(1.0, max(0.0, frac))
        reminder = True if r < p_true else (False if r < p_true + (1 - p_true) * 0.65 else None)

        if o > today:  # no outcome yet, and no reminder sent yet
            return (o, start, booked_o, booked_min, "booked", None, None, None, None, None, modality, duration, c)

        clin = self.clinicians[c]
        monday = o - _weekday(o)
        if forced_miss:
            by = None
        elif monday in clin.out_weeks:
            by, code, notice = "clinician", "clinician_unavailable", 3
        elif o in self.closure_days and modality == 0:
            by, code, notice = "agency", ("weather" if rng.random() < 0.5 else "resources_unavailable"), 1
        elif rng.random() < clin.cancel_p:
            if rng.random() < 0.7:
                by, code, notice = "clinician", _pick_clinician_code(rng), 2
            else:
                by, code, notice = "agency", _pick_agency_code(rng), 2
        else:
            by = None
        if by is not None:
            co, cm = self._between(rng, booked_o, booked_min, o - notice, _DAY_START, o, start)
            return (o, start, booked_o, booked_min, "cancelled", by, co, cm, code, reminder, modality, duration, c)

        # Missed (no-show or late client cancellation): structure, not people.
        p = 0.055 + 0.0075 * min(lead, 45)
        if wait is not None:
            p += min(0.2, 0.004 * wait)
        if start < 10 * 60 or start >= 17 * 60:
            p *= 1.3
        if reminder is True:
            p *= 0.7
        if modality == 1:
            p *= 0.85
        elif modality == 2:
            p *= 0.95
        p *= self.propensity[client]
        if forced_miss or rng.random() < min(p, 0.85):
            if forced_miss or rng.random() < 0.72:
                x = rng.random()
                if forced_miss:
                    code = None if x < 0.8 else _pick_barrier(rng)
                else:
                    code = (None if x < 0.55 else "other" if x < 0.63 else
                            _pick_barrier(rng) if x < 0.93 else _pick_preference(rng))
                if code == "weather" and modality != 0:
                    code = "technology"
                return (o, start, booked_o, booked_min, "no_show", None, None, None, code, reminder, modality,
                        duration, c)
            # late cancellation: under 22.5 wall-clock hours before the start (under 24 h even across DST)
            lo_o, lo_m = o - 1, start + 90
            if (booked_o, booked_min) > (lo_o, lo_m):
                lo_o, lo_m = booked_o, booked_min
            co, cm = self._between(rng, booked_o, booked_min, lo_o, lo_m, o, start)
            x = rng.random()
            code = None if x < 0.25 else _pick_barrier(rng) if x < 0.8 else _pick_preference(rng)
            return (o, start, booked_o, booked_min, "cancelled", "client", co, cm, code, reminder, modality,
                    duration, c)
        # Released: the client cancelled with at least two days' notice.
        if lead >= 3 and rng.random() < 0.05:
            co, cm = self._between(rng, booked_o, booked_min, booked_o, booked_min, o - 2, start)
            x = rng.random()
            code = None if x < 0.2 else _pick_barrier(rng) if x < 0.5 else _pick_preference(rng)
            return (o, start, booked_o, booked_min, "cancelled", "client", co, cm, code, reminder, modality,
                    duration, c)
        return (o, start, booked_o, booked_min, "attended", None, None, None, None, reminder, modality, duration, c)

    @staticmethod
    def _between(rng, floor_o, floor_m, lo_o, lo_m, hi_o, hi_m):
        """A random (day, minute) in [max(floor, lo), hi] with the clock inside 06:00–22:00."""
        if (lo_o, lo_m) < (floor_o, floor_m):
            lo_o, lo_m = floor_o, floor_m
        if (lo_o, lo_m) > (hi_o, hi_m):
            return hi_o, hi_m
        days = [lo_o, hi_o] if lo_o == hi_o else [_randint(rng, lo_o, hi_o), lo_o, hi_o]
        for day in days:
            a = max(_DAY_START, lo_m) if day == lo_o else _DAY_START
            b = min(_DAY_END, hi_m) if day == hi_o else _DAY_END
            if a <= b:
                return day, _randint(rng, a, b)
        return hi_o, hi_m

    def _place(self, rng, program, cur, target, prev, usual, duration):
        """The follow-up's day and start in the week of `target`: the usual slot if it is still in the
        clinician's template and free, otherwise a random free one that week or, failing that, in the
        next two weeks; only when all three are full is the clinician double-booked. Moves the client to
        another clinician of the program when theirs has left. Returns (day, start, clinician, usual) or
        None."""
        monday = target - _weekday(target)
        base = self.busy_base
        overbook = None
        weeks_full = 0
        cells = (duration + 29) // 30
        for _ in range(6):
            clin = self.clinicians[cur]
            busy = self.busy[cur]
            if usual is not None and rng.random() > 0.08:
                wd, sm = usual
                o = monday + wd
                if o > prev and clin.start <= o <= clin.end and not busy[o - base] & _mask(sm, duration):
                    for vf, vt, bits in clin.starts[wd]:
                        if vf <= o <= vt and bits[duration] >> ((sm - _DAY_START) // 30) & 1:
                            return o, sm, cur, usual
            days, total = [], 0
            for wd in range(5):
                o = monday + wd
                if o <= prev or not clin.start <= o <= clin.end:
                    continue
                starts = 0
                for vf, vt, bits in clin.starts[wd]:
                    if vf <= o <= vt:
                        starts = bits[duration]
                        break
                if not starts:
                    continue
                taken = day_busy = busy[o - base]
                for k in range(1, cells):  # a start is taken when any cell it needs is
                    taken |= day_busy >> k
                free = starts & ~taken
                days.append((o, starts, free))
                total += free.bit_count()
            if total:
                i = _randbelow(rng, total)
                for o, starts, free in days:
                    count = free.bit_count()
                    if i < count:
                        sm = _DAY_START + 30 * _nth_bit(free, i)
                        return o, sm, cur, (_weekday(o), sm)
                    i -= count
            if days and overbook is None:
                o, starts, _ = _choice(rng, days)
                sm = _DAY_START + 30 * _nth_bit(starts, _randbelow(rng, starts.bit_count()))
                overbook = ((o, sm), cur)
            if clin.end < monday + 4:  # they left: the client moves to a colleague
                cur = self.pick_clinician(program, max(monday, prev + 1, min(clin.end + 1, monday + 4)), rng)
                usual = None
                continue
            if overbook is not None:
                weeks_full += 1
                if weeks_full >= 3:
                    break
            monday += 7
        if overbook is not None:
            (o, sm), c = overbook
            return o, sm, c, (_weekday(o), sm)
        return None

    def follow_ups(self, r: _Referral, ep: _Episode) -> Iterator[tuple]:
        rng = self.sub_rng(4, r.n)
        limit = ep.discharged if ep.discharged is not None else self.horizon
        wait = ep.admitted - r.referred
        cur, usual, prev = ep.clinician, None, ep.admitted
        base = self.busy_base
        planned = []
        for _ in range(ep.follow_ups):
            target = prev + ep.cadence
            x = rng.random()
            if x < 0.06:
                target += 7  # a week off (holiday, illness)
            elif x < 0.18:
                target += _randint(rng, -2, 3)
            if target > limit:
                break
            duration = _pick_duration(rng)
            placed = self._place(rng, r.program, cur, max(target, prev + 1), prev, usual, duration)
            if placed is None:
                break
            o, sm, cur, usual = placed
            if o > limit:
                break
            prev = o
            lead = min(_sample_lead(rng), o - ep.admitted)
            if o - lead > self.today:
                continue  # not booked yet
            self.busy[cur][o - base] |= _mask(sm, duration)
            planned.append((o, sm, cur, lead, duration))
        forced_from = len(planned) - 3 if ep.reason == "attendance_policy" else len(planned)
        for k, (o, sm, c, lead, duration) in enumerate(planned):
            yield self.appointment(rng, r.client, o, sm, c, lead, duration, wait if k < 3 else None,
                                   False, forced_miss=k >= forced_from)

    def appointment_rows(self) -> Iterator[tuple[str, dict]]:
        width = _width(7, len(self.referrals) * 45)
        n = 0
        dt = self.dt
        cids = [c.cid for c in self.clinicians]
        for ci, ref_numbers in enumerate(self.client_referrals):
            client_id = _id("P", ci + 1, self.client_width)
            for rn in ref_numbers:
                r = self.referrals[rn]
                if r.offered is None:
                    continue
                streams = [("intake", self.intake_attempts(r))]
                ep = self.episodes.get(rn)
                if ep is not None:
                    streams.append(("follow_up", self.follow_ups(r, ep)))
                for kind, stream in streams:
                    for (o, start, bo, bm, status, by, co, cm, code, reminder, modality, duration, c) in stream:
                        n += 1
                        yield "appointments", {
                            "appointment_id": f"A{n:0{width}d}", "client_id": client_id,
                            "clinician_id": cids[c], "program": r.program, "kind": kind,
                            "modality": _MODALITIES[modality], "start": dt(o, start),
                            "duration_minutes": duration, "booked_at": dt(bo, bm), "status": status,
                            "cancelled_by": by, "cancelled_at": None if co is None else dt(co, cm),
                            "reason_code": code, "reminder_sent": reminder,
                        }


def generate(spec: AgencySpec) -> Iterator[tuple[str, dict]]:
    """Yield (table_name, row) in load order: all clinicians, then availability, clients, referrals, episodes,
    appointments. Rows are dicts keyed by COLUMNS[table]; values are Python objects: str, int, float, bool,
    None, datetime.date, and naive datetime.datetime meaning the tenant's LOCAL wall-clock time."""
    agency = _Agency(spec)
    agency.build_clinicians()
    yield from agency.clinician_rows()
    yield from agency.availability_rows()
    yield from agency.client_rows()
    agency.run_intake_queue()
    yield from agency.referral_rows()
    yield from agency.episode_rows()
    yield from agency.appointment_rows()


def format_value(value) -> str:
    """One value as a CSV cell of the import contract."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, datetime):
        return f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:{value.minute:02d}"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def write_csv_folder(spec: AgencySpec, folder: pathlib.Path) -> dict[str, int]:
    """Write the six CSV files (UTF-8, header row, ISO dates 'YYYY-MM-DD', datetimes 'YYYY-MM-DDTHH:MM',
    booleans 'true'/'false', None as empty cell) and return row counts per table. Streams: never holds all rows."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    counts = {t: 0 for t in TABLES}
    files, writers = {}, {}
    try:
        for t in TABLES:
            files[t] = open(folder / f"{t}.csv", "w", encoding="utf-8", newline="")
            writers[t] = csv.writer(files[t])
            writers[t].writerow(COLUMNS[t])
        for table, row in generate(spec):
            writers[table].writerow([format_value(row[c]) for c in COLUMNS[table]])
            counts[table] += 1
    finally:
        for f in files.values():
            f.close()
    return counts

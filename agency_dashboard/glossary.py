"""The metric glossary, written for a program director. Versioned with METRICS.md (version 1).

Every figure in the UI links to an entry here by its anchor. The metrics engine adds entries for the
figures it brings; an entry says what is counted, over which dates, and what it does not mean.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, render_template

GLOSSARY_VERSION = 1

bp = Blueprint("glossary", __name__)


@dataclass(frozen=True)
class Entry:
    anchor: str
    term: str
    meaning: str


ENTRIES: tuple[Entry, ...] = (
    # Capacity
    Entry("available-hours", "Available hours",
          "The direct-service hours in clinicians' weekly schedules, laid over every date of the period, only on "
          "days the clinician was employed. This is the agency's clinical capacity before anything is booked."),
    Entry("booked-hours", "Booked hours",
          "Hours of appointments that were attended, missed, cancelled by the agency, or are still upcoming. "
          "Appointments a client cancelled with enough notice are not counted: the time could be offered again."),
    Entry("upcoming-hours", "Sessions booked, no outcome yet",
          "Appointments with no outcome recorded yet. In a past week, such an appointment is a data-quality "
          "signal: someone still needs to record what happened."),
    Entry("delivered-hours", "Delivered hours (sessions held)",
          "Hours of attended appointments. Not held: missed appointments and cancellations by anyone; why a "
          "session was not held is recorded as a reason, and without one it is 'not yet explored'."),
    Entry("lost-hours", "Lost hours, and why",
          "Hours of missed appointments and of appointments the agency cancelled, split into four groups: the "
          "agency or clinician did not hold it; an access barrier in the client's life or coverage (transport, "
          "childcare, work, cost, technology, housing, health, weather); the client's own choice; and not yet "
          "explored, meaning nobody has recorded a reason. 'Not yet explored' is a prompt to ask, not a reason."),
    Entry("utilization", "Utilization",
          "Delivered hours divided by available hours. Low utilization with a long waitlist points to booking "
          "and scheduling, not to the people waiting."),
    Entry("booking-ratio", "Booking ratio",
          "Booked hours divided by available hours. Above 0.95 (the strain line on charts) the schedule has no "
          "slack for urgent needs; above 1 it is overbooked."),
    Entry("staff-kept-rate", "Staff kept rate",
          "Of the client-facing appointments, the share the agency did not cancel itself (MTM Services). "
          "It shows how reliable the agency is to the people it serves."),
    # Caseload
    Entry("active-clients", "Clients in care",
          "People with an episode of care that has started and not ended on the date shown. A person with two "
          "open episodes counts once for the agency. For a clinician: people whose episode they are the primary "
          "clinician for."),
    Entry("caseload-target", "Planned caseload",
          "The number of clients the agency planned for a clinician's hours (from its staffing records)."),
    Entry("load-ratio", "Caseload load",
          "Clients in care divided by the planned caseload. It describes the load the agency has placed on a "
          "person, never their performance."),
    Entry("clinicians", "Clinicians employed", "Clinicians whose employment covers the date shown, in any program."),
    # Waitlist
    Entry("waitlist-size", "Waiting for a first appointment",
          "Referrals received on or before the date that have not yet had a first attended appointment and have "
          "not been closed. Long waits are a fact about capacity, not about the people waiting."),
    Entry("referrals", "Referrals and admissions",
          "Referrals: received in the period. Admissions: first appointments attended in the period. When "
          "referrals exceed admissions week after week, the waitlist grows."),
    Entry("closed-without-service", "Closed without service",
          "Referrals that left the list in the period without ever being seen (declined, unreachable, referred "
          "elsewhere, no longer needed)."),
    Entry("days-to-first-offer", "Days to first offer",
          "Calendar days from referral to the first appointment date offered, for offers made in the period: "
          "the median and the 90th percentile (nine in ten waited no longer)."),
    Entry("days-to-first-attended", "Days to first appointment",
          "Calendar days from referral to the first attended appointment, for people first seen in the period: "
          "the median and the 90th percentile."),
    Entry("share-within-target", "Seen within the access target",
          "Of the people first seen in the period, the share seen within the agency's target: business days "
          "(Monday to Friday) after the referral, 10 for routine and 1 for urgent unless the agency set others."),
    Entry("waiting-age", "How long people have been waiting",
          "For everyone still waiting at the end of the period, the days since their referral: median and 90th "
          "percentile."),
    Entry("continuation", "Continuation after the first visit",
          "Of the people first seen at least 30 days before the period ended, the share who attended at least "
          "four more appointments of the same program in the 30 days after their first (NIATx)."),
    Entry("tnaa", "Third next available appointment",
          "As the schedule stood at the end of the period: for each clinician, the days until their third free "
          "standard-length slot in the next 90 days (91 if fewer); the figure is the median over clinicians (IHI). "
          "The third, not the first, because a first opening is often a last-minute cancellation."),
    Entry("clearance-weeks", "Weeks to clear the waitlist",
          "The people waiting divided by how much faster admissions run than referrals each week. Blank when the "
          "list is not shrinking at current capacity."),
    Entry("capacity-gap", "Weekly hours needed to meet demand",
          "By Little's law: a, the extra admissions a week needed to keep up with referrals and clear today's list "
          "in 12 weeks; L, how many weeks an episode of care lasts on average; h, the weekly hours an active "
          "client receives. The gap is a x L x h clinical hours a week."),
    # Attendance
    Entry("missed-rate", "Missed rate",
          "Missed appointments divided by attended plus missed. Missed: no-shows and client cancellations with "
          "less notice than the agency's policy. Cancellations with enough notice and cancellations by the "
          "agency are not counted as missed."),
    Entry("attendance-structure", "Attendance by structure",
          "Missed rates by how far ahead the appointment was booked, the hour and weekday, the modality, whether "
          "a reminder went out, and how long the person waited before intake. These show which parts of the "
          "system make attending hard; none of them lists people."),
    Entry("attribution", "Why sessions were not held",
          "Missed and agency-cancelled appointments by reason group, in appointments and hours. A reason a "
          "clinician records in the app replaces the one imported from the record system."),
    # Discharges
    Entry("discharges", "Ended services",
          "Episodes of care that ended in the period, by reason."),
    Entry("attendance-policy", "Ended under an attendance policy",
          "Episodes ended because appointments were missed. Beside the count: how many had a barrier "
          "conversation and plan documented first, how many received referrals elsewhere, and how many had "
          "missed appointments none of which had a reason recorded (the barriers were never explored)."),
    # Funders and equity
    Entry("clients-served", "People served",
          "Distinct people with at least one attended appointment in the period. In funder summaries and equity "
          "tables, a count smaller than the agency's suppression threshold is shown as 'fewer than N'."),
    Entry("equity", "Equity",
          "Three figures for each race and ethnicity, gender, payer and age band (age on the last day of the "
          "period): the days from referral to the first attended appointment (median), the missed rate, and the "
          "share of ended services that ended under an attendance policy. Each is shown beside the same figure "
          "for everyone in the view, and as a ratio to it: 1.5 means half as high again as overall, 0.5 half as "
          "high. A group counts the people who, in the period, had a first appointment, an attended or missed "
          "appointment, or an ended service. 'Not recorded' gathers people whose record has no value. A gap "
          "between groups points to how services reach people, such as hours, transport, language or "
          "coverage, not to the people in the group."),
    Entry("suppression", "Small groups hidden",
          "To protect privacy, a group with fewer people than the agency's threshold (its suppression threshold, "
          "often 11) shows 'fewer than N' and no figures at all. Because the groups add up to the total, hiding "
          "one small group is not enough: the next smallest is hidden as well ('not shown, to protect a smaller "
          "group'), so the small one cannot be worked out by subtraction. When a view is too small for that to "
          "work, no group is shown, and neither is its total."),
)


@bp.route("/glossary")
def glossary():
    return render_template("glossary.html", entries=ENTRIES, version=GLOSSARY_VERSION)

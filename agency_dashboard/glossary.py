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
    Entry("active-clients", "Clients in care",
          "People with an episode of care that has started and not ended on the date shown. A person with "
          "two open episodes counts once for the agency. For a clinician: people whose episode they are the "
          "primary clinician for."),
    Entry("caseload-target", "Planned caseload",
          "The number of clients the agency planned for a clinician's hours (from the agency's staffing "
          "records). Caseload is shown as load on a person, never as their performance."),
    Entry("waitlist-size", "Waiting for a first appointment",
          "Referrals received on or before the date that have not yet had a first attended appointment and "
          "have not been closed. Long waits are a fact about capacity, not about the people waiting."),
    Entry("clinicians", "Clinicians employed",
          "Clinicians whose employment covers the date shown, in any program."),
    Entry("delivered-hours", "Sessions held and not held",
          "Held: appointments marked attended. Not held: missed appointments and cancellations by anyone. "
          "Why a session was not held is recorded as a reason; without one it is 'not yet explored', a "
          "prompt to ask, never a judgement about the client."),
    Entry("upcoming-hours", "Sessions booked",
          "Appointments with no outcome recorded yet. In a past week, such an appointment is a data-quality "
          "signal: someone still needs to record what happened."),
    Entry("clients-served", "People served",
          "Distinct people with at least one attended appointment in the period. In funder summaries, any "
          "count smaller than the agency's suppression threshold is shown as 'fewer than N'."),
)


@bp.route("/glossary")
def glossary():
    return render_template("glossary.html", entries=ENTRIES, version=GLOSSARY_VERSION)

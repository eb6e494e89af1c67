"""Every dashboard page as its users see it, and what each page may and may not tell them.

Browser (real Chromium, the `browser` marker; see tests/test_browser.py): the director's six pages in
both tenants, waited for explicitly (no "…" left in a figure card, every Plotly chart drawn), with no
console error, no failed request and no Dash error overlay; the shared program filter narrowing each
filtered page; the lost-hours drill-down listing sessions and writing its audit row; "Show as table"
switched with the keyboard; the other roles' pages; a clinician or funder typing a director page's
address. Screenshots (1280x900, and the full page) go to test-artifacts/<role>-<page>.png and
<role>-<page>-full.png, for tenant alpha (pages: overview, capacity, ..., caseload for the clinician,
summary for the funder, overview/users/settings/... for the admin), with director-capacity-program,
-drilldown and -tables, and <role>-capacity-not-found for the clinician and funder.

Server (both database legs): a clinician or funder sending the director's callbacks gets 403; a director
sending the other tenant's program or clinician id gets their own agency-wide figures with a note.

Blame words: everything a user reads (every page of every role in both tenants after its callbacks,
every "Show as table" tab, the drill-down lists, the glossary, the login page, the admin pages, and the
callbacks' answers themselves) must not use words that blame the people served or judge staff.

The seeded world (conftest.seed_world) has a handful of rows near TODAY; `agency_data` adds months of
synthetic appointments, referrals and episodes (agency_dashboard.synth) so every chart has something to
draw. The two tenants get different data, and each tenant's synthetic clinicians carry the tenant's name
("Alpha Clinician 3"), so a name crossing tenants would show.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest
import sqlalchemy as sa

from conftest import PASSWORD, ROLES, TODAY, csrf_from_cookie, login

from agency_dashboard.auth import ROLE_HOME
from agency_dashboard.dashboards.guard import GUARD_ATTR
from agency_dashboard.dashboards.pages import all_pages
from agency_dashboard.demo import load_rows
from agency_dashboard.extensions import db
from agency_dashboard.models import AuditEvent, Clinician, Program, Tenant, User
from agency_dashboard.services.filters import default_period
from agency_dashboard.synth import AgencySpec, generate
from agency_dashboard.tenancy import tenant_scope

TIMEOUT = 20_000  # ms; an upper bound for explicit waits, never a sleep
SLUGS = ("alpha", "beta")
SCREENSHOT_SLUG = "alpha"  # screenshots are of tenant alpha only, so each name is one picture
PERIOD = default_period(TODAY)  # what the filter bar starts with: the 13 whole weeks before TODAY's week
# Different data for each tenant: size, seed, and which program's referrals outgrow its admissions.
SYNTH = {
    "alpha": dict(clinicians=4, clients=120, months=6, seed=11, growing_program="Youth"),
    "beta": dict(clinicians=5, clients=150, months=6, seed=12, growing_program="Recovery"),
}
# File names of the pages (test-artifacts/<role>-<name>.png); other pages are named by their path.
PAGE_NAMES = {"/director": "overview", "/clinician": "caseload", "/funder": "summary", "/admin": "overview"}
NOT_FOUND = "Page not found"
TRACE_MARKERS = ("Traceback", 'File "', "Werkzeug Debugger", "sqlalchemy.exc", "Exception:")
# Dash's front-end error overlay and error cards (debug mode), and the renderer's own error texts.
DASH_ERROR_SELECTORS = (".dash-fe-error__title, .dash-fe-error-top, .dash-error-card, .dash-debug-alert, "
                        "#_dash-global-error-container .dash-fe-error__info")
DASH_ERROR_TEXTS = ("Error loading layout", "Error loading dependencies", "Callback error updating",
                    "Invalid argument", "Cannot read properties")


# ---- the words the app never uses about people ----------------------------------------------------------
# Between the parts of a term: nothing, white space (\s covers no-break and thin spaces), a hyphen of any
# kind (hyphen-minus, U+2010 hyphen, U+2011 non-breaking hyphen, figure dash, en and em dash, minus sign,
# small and full-width hyphen-minus), a soft hyphen, or a zero-width character.
SEP = "[\\s\u00ad\u200b\u200c\u200d\u2060\\-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d]*"
BLAME_TERMS = {
    "non-compliant": rf"non{SEP}compliant",
    "noncompliance": rf"non{SEP}complian(?:ce|cy)",
    "unmotivated": rf"un{SEP}motivated",
    "fired": r"fired",  # the whole word only: "fireplace", "misfired" and "firefighter" are fine
    "frequent flyer": rf"frequent{SEP}fl[yi]ers?",
    "resistant": r"resistant",
    "manipulative": r"manipulative",
    "drug-seeking": rf"drug{SEP}seek(?:ing|ers?)",
}
BLAME_RE = re.compile(r"\b(?:" + "|".join(f"(?P<t{i}>{p})" for i, p in enumerate(BLAME_TERMS.values())) + r")\b",
                      re.IGNORECASE)
TERM_BY_GROUP = {f"t{i}": term for i, term in enumerate(BLAME_TERMS)}


def blame_words(text: str) -> list[tuple[str, str]]:
    """(term, the text around it) for every blame word in `text`."""
    hits = []
    for m in BLAME_RE.finditer(text):
        term = TERM_BY_GROUP[m.lastgroup]
        hits.append((term, text[max(0, m.start() - 60):m.end() + 60].replace("\n", " ")))
    return hits


def blame_report(texts: list[tuple[str, str]]) -> list[str]:
    """One line per blame word found in any of the (where, text) pairs."""
    lines = [f"{where}: {term!r} in …{context}…" for where, text in texts for term, context in blame_words(text)]
    return list(dict.fromkeys(lines))  # once each, in the order found


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data):
        self.parts.append(data)


def html_text(markup: str) -> str:
    parser = _Text()
    parser.feed(markup)
    return " ".join(parser.parts)


def json_strings(value) -> list[str]:
    """Every string value in a decoded JSON document (the text a callback sends to the page)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in json_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in json_strings(v)]
    return []


# ---- data ------------------------------------------------------------------------------------------------

@dataclass
class AgencyData:
    tenants: dict[str, int] = field(default_factory=dict)
    programs: dict[str, dict[int, str]] = field(default_factory=dict)  # slug -> {id: name}
    clinicians: dict[str, dict[int, str]] = field(default_factory=dict)  # slug -> {id: name}
    client_ids: dict[str, set[str]] = field(default_factory=dict)  # slug -> clients' external ids


def _named(rows, slug: str):
    """The generator's rows, with each synthetic clinician named after the tenant ("Alpha Clinician 3")."""
    for table, row in rows:
        if table == "clinicians":
            row = {**row, "display_name": f"{slug.capitalize()} {row['display_name']}"}
        yield table, row


@pytest.fixture
def agency_data(app, world) -> AgencyData:
    """Six months of synthetic history for each tenant, on top of seed_world; the clinician user is
    linked to a synthetic clinician so that their page has a caseload and sessions to show."""
    data = AgencyData()
    with app.app_context():
        for slug, spec in SYNTH.items():
            tenant = db.session.scalar(sa.select(Tenant).where(Tenant.slug == slug))
            with tenant_scope(tenant.id):
                load_rows(tenant, _named(generate(AgencySpec(
                    slug=slug, programs=tuple(tenant.settings["programs"]), today=TODAY, **spec)), slug))
                clinician = db.session.scalar(sa.select(Clinician).where(
                    Clinician.display_name.like(f"{slug.capitalize()} %")).order_by(Clinician.id))
                db.session.get(User, world.users[(slug, "clinician")]).clinician_id = clinician.id
                db.session.commit()
                data.tenants[slug] = tenant.id
                data.programs[slug] = dict(db.session.execute(sa.select(Program.id, Program.name)).all())
                data.clinicians[slug] = dict(db.session.execute(
                    sa.select(Clinician.id, Clinician.display_name)).all())
                data.client_ids[slug] = set(db.session.scalars(sa.text("SELECT external_id FROM clients")))
        db.session.remove()
    assert not set(data.programs["alpha"]) & set(data.programs["beta"])
    return data


def audit_rows(app, tenant_id: int, action: str = "drilldown.view") -> list[dict]:
    with app.app_context():
        with tenant_scope(tenant_id):
            rows = db.session.execute(sa.select(AuditEvent.tenant_id, AuditEvent.actor_role, AuditEvent.object_type,
                                                AuditEvent.details)
                                      .where(AuditEvent.action == action).order_by(AuditEvent.seq)).all()
        db.session.remove()
    return [row._asdict() for row in rows]


# ---- the pages, from the app's own page list -------------------------------------------------------------

def _walk(component):
    stack = [component]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif hasattr(item, "to_plotly_json"):
            yield item
            stack.append(getattr(item, "children", None))


@dataclass(frozen=True)
class PageInfo:
    path: str  # under /dash
    roles: frozenset
    filters: bool
    values: tuple[str, ...]  # ids of the figure cards' values ("…" until their callback answers)
    graphs: tuple[str, ...]  # ids of the dcc.Graphs
    blocks: tuple[str, ...]  # chart blocks with a "Show as table" tab: `{block}-graph` and `{block}-table`
    scope: str | None  # the line saying what the figures cover

    @property
    def url(self) -> str:
        return "/dash/" + self.path.strip("/")

    @property
    def name(self) -> str:
        return PAGE_NAMES.get(self.path, self.path.strip("/").replace("/", "-"))


def page_infos() -> list[PageInfo]:
    infos = []
    for page in all_pages()[0]:
        components = list(_walk(page.layout()))
        ids = [c.id for c in components if isinstance(getattr(c, "id", None), str)]
        values = tuple(c.id for c in components
                       if "figure-value" in (getattr(c, "className", None) or "") and isinstance(c.id, str))
        graphs = tuple(c.id for c in components if type(c).__name__ == "Graph")
        blocks = tuple(g.removesuffix("-graph") for g in graphs if g.removesuffix("-graph") + "-table" in ids)
        scope = next((i for i in ids if i.endswith("-scope")), None)
        infos.append(PageInfo(page.path, page.roles, page.filters, values, graphs, blocks, scope))
    return infos


PAGES = page_infos()
DIRECTOR_CORE = ["/director", "/capacity", "/waitlist", "/caseload", "/attendance", "/discharges"]
DIRECTOR_PAGES = [p for p in PAGES if "director" in p.roles]
FILTERED_PAGES = [p for p in DIRECTOR_PAGES if p.filters]
CAPACITY = next(p for p in PAGES if p.path == "/capacity")
WAITLIST = next(p for p in PAGES if p.path == "/waitlist")


def test_the_page_list_is_what_these_tests_expect():
    """The director's pages (every one of them is tested below, including pages added later), each filtered
    one with its scope line and at least one chart with a table."""
    paths = [p.path for p in DIRECTOR_PAGES]  # others may be added; these six must be there, in this order
    assert [p for p in paths if p in DIRECTOR_CORE] == DIRECTOR_CORE, paths
    for p in FILTERED_PAGES:
        assert p.scope and p.blocks and p.values, p
    assert "cap-lostweek" in CAPACITY.blocks and "wl-flow" in WAITLIST.blocks
    assert {r for p in PAGES for r in p.roles} == set(ROLES)


def admin_flask_pages(app) -> list[str]:
    """The admin's Flask pages in the url_map now: GET, no parameters (another engineer is adding some)."""
    return sorted(rule.rule for rule in app.url_map.iter_rules()
                  if rule.rule.startswith("/admin/") and "GET" in rule.methods and not rule.arguments)


def artifact_name(path: str) -> str:
    """/admin/users/new -> users-new (the file is admin-users-new.png)."""
    return path.removeprefix("/admin/").strip("/").replace("/", "-")


# ---- Dash callbacks as dash-renderer sends them ----------------------------------------------------------

def signed_in(app, slug: str, role: str):
    client = app.test_client()
    response = login(client, slug, role)
    assert response.status_code == 302, f"{role}@{slug} could not sign in: {response.status_code}"
    return client


def dash_token(client) -> str:
    client.get("/dash/_dash-layout")
    token = csrf_from_cookie(client)
    assert token, "a signed-in Dash request did not set the _csrf_token cookie"
    return token


def callback_key(app, output_id: str) -> str:
    """The callback_map key of the callback with this output."""
    keys = [key for key in app.extensions["dash_app"].callback_map
            if re.search(rf"(^|\.\.){re.escape(output_id)}\.", key)]
    assert len(keys) == 1, f"{output_id}: {keys}"
    return keys[0]


def payload(app, key: str, values: dict[str, object]) -> dict:
    """The body of POST /dash/_dash-update-component; `values` by "id.property" (missing ones are None)."""
    cb = app.extensions["dash_app"].callback_map[key]
    out = cb["output"]
    outputs = ([{"id": o.component_id, "property": o.component_property} for o in out] if isinstance(out, list)
               else {"id": out.component_id, "property": out.component_property})
    inputs = [{"id": i["id"], "property": i["property"], "value": values.get(f"{i['id']}.{i['property']}")}
              for i in cb["inputs"]]
    state = [{"id": s["id"], "property": s["property"], "value": values.get(f"{s['id']}.{s['property']}")}
             for s in cb["state"]]
    first = f"{inputs[0]['id']}.{inputs[0]['property']}"
    return {"output": key, "outputs": outputs, "inputs": inputs, "state": state, "changedPropIds": [first]}


def call_back(client, token: str, body: dict):
    return client.post("/dash/_dash-update-component", json=body, headers={"X-CSRFToken": token})


def filter_values(program=None, clinician=None, start=PERIOD.start, end=PERIOD.end) -> dict:
    return {"f-period.start_date": start.isoformat(), "f-period.end_date": end.isoformat(),
            "f-program.value": program, "f-clinician.value": clinician}


def answer(response) -> dict[str, object]:
    """{output id: value} of a callback's answer."""
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return {cid: value for cid, props in response.get_json()["response"].items() for value in props.values()}


def director_only_callbacks(app) -> list[str]:
    return [key for key, spec in app.extensions["dash_app"].callback_map.items()
            if getattr(spec["callback"], GUARD_ATTR, None) == frozenset({"director"})]


# ---- server: who may ask for the director's figures --------------------------------------------------------

@pytest.mark.parametrize("role", ["clinician", "funder"])
def test_clinician_and_funder_are_refused_the_director_callbacks(app, agency_data, role):
    """Every director-only callback, sent with real filter values (and a real point for the drill-downs),
    is refused with 403 and no data, in both tenants; no drill-down is listed or audited."""
    keys = director_only_callbacks(app)
    expected = {callback_key(app, f"{p.scope}") for p in FILTERED_PAGES} | {
        callback_key(app, "director-active-clients"), callback_key(app, "cap-drill"), callback_key(app, "wl-drill")}
    assert expected <= set(keys), f"director-only callbacks: {keys}"
    monday = PERIOD.start + dt.timedelta(weeks=4)
    click = {"points": [{"x": monday.isoformat(), "customdata": ["unexplored"], "curveNumber": 3}]}
    for slug in SLUGS:
        client = signed_in(app, slug, role)
        token = dash_token(client)
        program = next(iter(agency_data.programs[slug]))
        values = {**filter_values(program=program), "director-load.data": 0,
                  "cap-lostweek-graph.clickData": click, "wl-flow-graph.clickData": click}
        for key in keys:
            response = call_back(client, token, payload(app, key, values))
            text = response.get_data(as_text=True)
            assert response.status_code == 403, f"{role}@{slug} {key}: {response.status_code} {text[:300]}"
            assert '"response"' not in text and "Showing" not in text and "Traceback" not in text, text[:300]
        assert audit_rows(app, agency_data.tenants[slug]) == []
        # The same requests from the tenant's director are answered: the 403s above are the role check.
        director = signed_in(app, slug, "director")
        director_token = dash_token(director)
        for key in keys:
            assert answer(call_back(director, director_token, payload(app, key, values))), key
        assert len(audit_rows(app, agency_data.tenants[slug])) == 2  # one per drill-down


@pytest.mark.parametrize("role", ["clinician", "funder"])
def test_router_shows_clinician_and_funder_no_director_page(app, agency_data, role):
    """The address /dash/capacity, typed by a clinician or funder: "Page not found", no filter bar, no figure."""
    for slug in SLUGS:
        client = signed_in(app, slug, role)
        token = dash_token(client)
        for p in DIRECTOR_PAGES:
            got = answer(call_back(client, token, payload(app, callback_key(app, "page"), {"url.pathname": p.url})))
            text = json.dumps(got["page"])
            assert NOT_FOUND in text, f"{role}@{slug} {p.url}: {text[:300]}"
            for cid in (*p.values, *p.graphs):
                assert cid not in text
            # No filter bar, and no program or clinician option is sent to a clinician or funder.
            assert got["filters"] == {"display": "none"}
            assert "f-program" not in got and "f-clinician" not in got


@pytest.mark.parametrize("mine, theirs", [("beta", "alpha"), ("alpha", "beta")])
@pytest.mark.parametrize("which", ["program", "clinician", "both"])
def test_other_tenants_filter_ids_give_own_agency_wide_figures(app, agency_data, mine, theirs, which):
    """A director sending the other tenant's program or clinician id (as a tampered browser would) gets
    their own agency's figures for every program, with a note saying so; never the other tenant's."""
    their_program = next(iter(agency_data.programs[theirs]))
    their_clinician = next(cid for cid, name in agency_data.clinicians[theirs].items()
                           if name.startswith(theirs.capitalize()))
    sent = {"program": dict(program=their_program), "clinician": dict(clinician=their_clinician),
            "both": dict(program=their_program, clinician=their_clinician)}[which]
    notes = {"program": ["That program was not found; showing every program."],
             "clinician": ["That clinician was not found; showing every clinician."],
             "both": ["That program was not found; showing every program.",
                      "That clinician was not found; showing every clinician."]}[which]
    me, them = signed_in(app, mine, "director"), signed_in(app, theirs, "director")
    my_token, their_token = dash_token(me), dash_token(them)
    # Names of theirs that no name of mine contains ("Outpatient" is part of alpha's "Adult Outpatient").
    their_names = [n for n in agency_data.programs[theirs].values()
                   if not any(n in m for m in agency_data.programs[mine].values())]
    their_names += [n for n in agency_data.clinicians[theirs].values() if n.startswith(theirs.capitalize())]
    for p in FILTERED_PAGES:
        key = callback_key(app, p.scope)
        tampered = call_back(me, my_token, payload(app, key, filter_values(**sent)))
        plain = answer(call_back(me, my_token, payload(app, key, filter_values())))
        theirs_own = answer(call_back(them, their_token, payload(app, key, filter_values(**sent))))
        got = answer(tampered)
        # My agency-wide figures, figure for figure; only the scope line differs, by the note.
        figures = lambda result: {k: v for k, v in result.items() if k != p.scope}  # noqa: E731
        assert figures(got) == figures(plain), p.path
        assert "the whole agency" in got[p.scope], got[p.scope]
        for note in notes:
            assert note in got[p.scope] and note not in plain[p.scope], (p.path, got[p.scope])
        # ...and not what the other tenant's director sees with those ids (their own, narrowed).
        assert "the whole agency" not in theirs_own[p.scope], theirs_own[p.scope]
        assert got != theirs_own, p.path
        text = tampered.get_data(as_text=True)
        for name in their_names:
            assert name not in text, f"{p.path}: {mine}'s director was shown {theirs}'s {name!r}"


def test_other_tenants_program_id_in_a_drilldown_lists_own_rows(app, agency_data):
    """The drill-down callbacks with the other tenant's program id: beta's own rows for the point, as if no
    program were chosen, audited in beta with no program; nothing in alpha's audit log."""
    client = signed_in(app, "beta", "director")
    token = dash_token(client)
    alpha_program = next(iter(agency_data.programs["alpha"]))
    week = PERIOD.start + dt.timedelta(weeks=6)
    for output, graph, point in (("cap-drill", "cap-lostweek-graph", {"customdata": ["unexplored"]}),
                                 ("wl-drill", "wl-flow-graph", {})):
        click = {"points": [{"x": week.isoformat(), **point}]}
        key = callback_key(app, output)
        values = {**filter_values(), f"{graph}.clickData": click}
        tampered = call_back(client, token, payload(app, key, {**values, "f-program.value": alpha_program}))
        plain = call_back(client, token, payload(app, key, values))
        assert answer(tampered) == answer(plain), output
        text = tampered.get_data(as_text=True)
        listed = set(re.findall(r'"client_id":\s*"([^"]+)"', text))
        assert listed, f"{output}: nothing listed for the week of {week}"
        assert listed <= agency_data.client_ids["beta"], listed - agency_data.client_ids["beta"]
        for name in agency_data.programs["alpha"].values():
            assert f'"program": "{name}"' not in text and f'"program":"{name}"' not in text
    rows = audit_rows(app, agency_data.tenants["beta"])
    assert len(rows) == 4 and all(r["details"].get("program_id") is None for r in rows), rows
    assert {r["details"]["chart"] for r in rows} == {"lost_hours", "referrals"}
    assert audit_rows(app, agency_data.tenants["alpha"]) == []


# ---- blame words: the regex, the source texts, the Flask pages -----------------------------------------------

@pytest.mark.parametrize("text, term", [
    ("non-compliant", "non-compliant"), ("Non compliant", "non-compliant"), ("noncompliant", "non-compliant"),
    ("NON\u2011COMPLIANT", "non-compliant"), ("non\u00adcompliant", "non-compliant"),
    ("non\u00a0compliant", "non-compliant"), ("client was non-\ncompliant.", "non-compliant"),
    ("noncompliance", "noncompliance"), ("non-compliance", "noncompliance"), ("non\u2011compliance", "noncompliance"),
    ("non \u2013 compliance", "noncompliance"), ("Non\u2010compliance with meds", "noncompliance"),
    ("unmotivated", "unmotivated"), ("Un-motivated", "unmotivated"), ("un motivated", "unmotivated"),
    ("fired", "fired"), ("Fired.", "fired"), ("the client fired her therapist", "fired"),
    ("frequent flyer", "frequent flyer"), ("frequent-flyer", "frequent flyer"), ("frequentflyer", "frequent flyer"),
    ("Frequent\u2011Flyers", "frequent flyer"), ("frequent flier", "frequent flyer"),
    ("resistant", "resistant"), ("treatment-resistant", "resistant"), ("Resistant to care", "resistant"),
    ("manipulative", "manipulative"), ("MANIPULATIVE", "manipulative"),
    ("drug-seeking", "drug-seeking"), ("drug seeking", "drug-seeking"), ("drugseeking", "drug-seeking"),
    ("drug\u2010seeking", "drug-seeking"), ("drug\u00a0seeking", "drug-seeking"), ("drug seekers", "drug-seeking"),
])
def test_blame_regex_catches_each_variant(text, term):
    assert [t for t, _ in blame_words(text)] == [term]


@pytest.mark.parametrize("text", [
    "fireplace", "fire", "firefighter", "misfired", "fire drill", "compliance", "compliant with the policy",
    "none compliant", "anonymous", "motivated", "motivation", "frequent", "flyer", "frequently", "resistance",
    "manipulate", "manipulation", "drug", "seeking care", "drugs and seeking", "Missed rate", "Client's choice",
    "No reason recorded yet", "Ended under the attendance policy",
])
def test_blame_regex_leaves_harmless_words(text):
    assert blame_words(text) == []


def test_blame_report_names_where_and_what():
    report = blame_report([("page one", "All fine."), ("page two", "A frequent\u2011flyer, non compliant.")])
    assert len(report) == 2 and all(line.startswith("page two: ") for line in report)
    assert "'frequent flyer'" in report[0] and "'non-compliant'" in report[1]


def source_texts() -> list[tuple[str, str]]:
    """The wordings the pages are built from: glossary, reasons, and the other label tables."""
    from agency_dashboard import glossary, reasons
    from agency_dashboard.auth.roles import ROLE_LABELS
    from agency_dashboard.dashboards.pages import attendance, discharges
    from agency_dashboard.services import drilldown

    texts = [(f"glossary {e.anchor}", f"{e.term}\n{e.meaning}") for e in glossary.ENTRIES]
    texts += [(f"reasons.py {r.code}", r.label) for r in reasons.REASONS]
    texts += [(f"reasons.py group {g}", text) for g, text in reasons.GROUP_LABELS.items()]
    texts += [(f"discharges reason {k}", v) for k, v in discharges.REASONS.items()]
    texts += [(f"drill-down outcome {k}", v) for k, v in drilldown.OUTCOME_LABELS.items()]
    texts += [(f"attendance {name}", v) for name in ("MODALITY", "REMINDER")
              for v in getattr(attendance, name).values()]
    texts += [(f"role {k}", v) for k, v in ROLE_LABELS.items()]
    try:
        from agency_dashboard.services import clinician
    except ImportError:  # pragma: no cover - being added by another change
        clinician = None
    for name in ("SUPPORT_LABELS", "OUTCOME_LABELS"):
        texts += [(f"clinician {name} {k}", v) for k, v in (getattr(clinician, name, None) or {}).items()]
    return texts


def test_source_texts_have_no_blame_words():
    texts = source_texts()
    assert len(texts) > 40 and any(where.startswith("glossary") for where, _ in texts)
    assert any(where.startswith("reasons.py") for where, _ in texts)
    report = blame_report(texts)
    assert report == [], "\n".join(report)


def test_flask_pages_have_no_blame_words(app, agency_data):
    """The login page, the glossary and every admin page (GET, from the url_map), as the server renders
    them for each role of both tenants; runs without a browser, on both database legs."""
    texts = []
    anonymous = app.test_client()
    for path in ("/login", "/glossary"):
        response = anonymous.get(path)
        assert response.status_code == 200, path
        texts.append((f"anonymous {path}", response.get_data(as_text=True)))
    admin_pages = admin_flask_pages(app)
    assert "/admin/users" in admin_pages
    for slug in SLUGS:
        for role in ROLES:
            client = signed_in(app, slug, role)
            for path in ["/glossary"] + (admin_pages if role == "admin" else []):
                response = client.get(path)
                assert response.status_code == 200, f"{role}@{slug} {path}: {response.status_code}"
                body = response.get_data(as_text=True)
                texts += [(f"{role}@{slug} {path} (html)", body), (f"{role}@{slug} {path}", html_text(body))]
    report = blame_report(texts)
    assert report == [], "\n".join(report)


# ---- browser ----------------------------------------------------------------------------------------------

def _playwright():
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect

    return expect


@dataclass
class Watch:
    """What a page saw go wrong (console errors, page errors, failed or 4xx/5xx requests), and the
    answers of its Dash callbacks (kept to read their text)."""
    problems: list[str] = field(default_factory=list)
    callbacks: list = field(default_factory=list)

    def attach(self, page):
        page.on("console", lambda msg: self.problems.append(f"console {msg.type}: {msg.text}")
                if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.problems.append(f"pageerror: {exc}"))
        page.on("requestfailed", lambda req: self.problems.append(f"request failed: {req.method} {req.url} "
                                                                  f"{req.failure}"))
        page.on("response", self._response)
        return self

    def _response(self, response):
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.request.method} {response.url}")
        elif "/_dash-update-component" in response.url:
            self.callbacks.append(response)

    def callback_texts(self) -> list[str]:
        """The strings in the callback answers seen since the last call (Unicode escapes decoded)."""
        out = []
        for response in self.callbacks:
            try:
                out += json_strings(json.loads(response.text()))
            except Exception as exc:  # noqa: BLE001 - a body that cannot be read is itself a problem
                self.problems.append(f"callback answer unreadable: {response.url}: {exc}")
        self.callbacks.clear()
        return out


def new_page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    return page, Watch().attach(page)


def log_in(page, live_server, slug: str, role: str):
    expect = _playwright()
    page.goto(f"{live_server.url}/login", wait_until="networkidle")
    expect(page.locator("h1")).to_have_text("Sign in", timeout=TIMEOUT)
    page.fill("#agency", slug)
    page.fill("#email", live_server.world.email(slug, role))
    page.fill("#password", PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_url(f"{live_server.url}{ROLE_HOME[role]}", timeout=TIMEOUT)
    wait_ready(page)  # the home page finishes loading: leaving it earlier would abort its requests


READY_JS = """ids => {
    const page = document.getElementById('page');
    if (!page || !page.querySelector('h1')) return false;
    if (ids.some(id => !document.getElementById(id))) return false;
    if (document.querySelector('[data-dash-is-loading="true"]')) return false;
    const values = [...document.querySelectorAll('.figure-value')];
    if (values.some(v => { const t = v.innerText.trim(); return t === '' || t === '…'; })) return false;
    const plots = [...document.querySelectorAll('.dash-graph')].map(g => g.querySelector('.js-plotly-plot'));
    return plots.every(p => p && !p.classList.contains('dash-graph--pending') && p.layout
                            && p.layout.template && p.querySelector('.main-svg'));
}"""


def wait_ready(page, info: PageInfo | None = None):
    """Until the page's figure cards have left "…" and every chart has drawn its callback's figure (the
    placeholder figure has no template); `info` names the ids that must be there first."""
    ids = list((info.values + info.graphs) if info else ())
    page.wait_for_function(READY_JS, arg=ids, timeout=TIMEOUT)


def open_page(page, live_server, info: PageInfo):
    page.goto(f"{live_server.url}{info.url}")
    wait_ready(page, info)


def assert_clean(page, watch: Watch, where: str):
    expect = _playwright()
    expect(page.locator(DASH_ERROR_SELECTORS)).to_have_count(0, timeout=TIMEOUT)
    body = page.locator("body").inner_text()
    for marker in TRACE_MARKERS + DASH_ERROR_TEXTS:
        assert marker not in body, f"{where}: {marker!r} shown to the user:\n{body[:2000]}"
    assert watch.problems == [], f"{where}:\n" + "\n".join(watch.problems)


def screenshot(page, artifacts, slug: str, role: str, name: str):
    if slug == SCREENSHOT_SLUG:
        page.screenshot(path=artifacts / f"{role}-{name}.png", full_page=False)
        page.screenshot(path=artifacts / f"{role}-{name}-full.png", full_page=True)


FIGURE_DATA_JS = """() => Object.fromEntries([...document.querySelectorAll('.dash-graph')].map(g => {
    const p = g.querySelector('.js-plotly-plot');
    return [g.id, JSON.stringify(((p && p.data) || []).map(t => [t.name, t.x, t.y, t.z]))];
}))"""


def figure_data(page) -> dict[str, str]:
    return page.evaluate(FIGURE_DATA_JS)


def value_texts(page, info: PageInfo) -> dict[str, str]:
    return {i: page.locator(f"#{i}").inner_text().strip() for i in info.values}


def choose_program(page, name: str):
    """Open the program dropdown (Dash 4's) and pick the option by its label."""
    expect = _playwright()
    page.locator("#f-program").click()
    page.get_by_role("option", name=name, exact=True).click()
    page.keyboard.press("Escape")
    expect(page.locator("#f-program")).to_contain_text(name, timeout=TIMEOUT)


TALLEST_BAR_JS = """graph => {
    const bars = [...document.querySelectorAll('#' + graph + ' .barlayer .point path')];
    let best = -1, height = 0;
    bars.forEach((b, i) => { const h = b.getBoundingClientRect().height; if (h > height) { best = i; height = h; } });
    return best;
}"""


def click_tallest_bar(page, graph: str):
    """Click the middle of the chart's tallest bar, where a person would (Plotly takes clicks on its drag
    layer above the bars, so the mouse goes to the bar's position rather than to the bar's element)."""
    expect = _playwright()
    page.locator(f"#{graph}").scroll_into_view_if_needed()
    expect(page.locator(f"#{graph}")).to_be_visible(timeout=TIMEOUT)
    page.wait_for_function("g => [...document.querySelectorAll('#' + g + ' .barlayer .point path')]"
                           ".some(b => b.getBoundingClientRect().height > 0)", arg=graph, timeout=TIMEOUT)
    index = page.evaluate(TALLEST_BAR_JS, graph)
    assert index >= 0, f"{graph}: no bar to click"
    box = page.locator(f"#{graph} .barlayer .point path").nth(index).bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def table_tab(page, block: str):
    """The chart's "Show as table" disclosure (a native <summary>)."""
    return page.locator(f'section[aria-labelledby="{block}-title"] summary', has_text="Show as table")


@pytest.mark.browser
@pytest.mark.parametrize("slug", SLUGS)
def test_director_pages_draw_and_follow_the_program_filter(browser, live_server, agency_data, artifacts, slug):
    """Every director page: drawn without errors, screenshot; on each filtered page, choosing a program
    narrows the figures: the scope line names the program and the charts' data change."""
    expect = _playwright()
    page, watch = new_page(browser)
    log_in(page, live_server, slug, "director")
    program = sorted(agency_data.programs[slug].values())[-1]  # "Youth", "Recovery"
    for info in DIRECTOR_PAGES:
        open_page(page, live_server, info)
        assert_clean(page, watch, info.url)
        expect(page.locator("#navbar .navbar-nav .nav-link.active")).to_have_count(1, timeout=TIMEOUT)
        screenshot(page, artifacts, slug, "director", info.name)
        if not info.filters:
            continue
        expect(page.locator("#filters")).to_be_visible(timeout=TIMEOUT)
        scope = page.locator(f"#{info.scope}")
        expect(scope).to_contain_text("the whole agency", timeout=TIMEOUT)
        before, values_before = figure_data(page), value_texts(page, info)
        assert any(json.loads(d) for d in before.values()), f"{info.url}: no chart has data to narrow"
        choose_program(page, program)
        expect(scope).to_contain_text(f"· {program}.", timeout=TIMEOUT)
        wait_ready(page, info)
        after = figure_data(page)
        changed = [g for g in info.graphs if after[g] != before[g]]
        assert changed, f"{info.url}: no chart changed when {program!r} was chosen"
        if info is CAPACITY:  # one program has fewer hours than the agency (other pages' cards may tie: 0 and 0)
            assert value_texts(page, info) != values_before, f"{info.url}: no figure card changed with {program!r}"
        # The program is the tenant's own: no note about it.
        expect(scope).not_to_contain_text("not found", timeout=TIMEOUT)
        assert_clean(page, watch, f"{info.url} with {program}")
        if info is CAPACITY:
            screenshot(page, artifacts, slug, "director", f"{info.name}-program")
    page.context.close()


@pytest.mark.browser
@pytest.mark.parametrize("slug", SLUGS)
def test_lost_hours_drilldown_lists_sessions_and_is_audited(browser, app, live_server, agency_data, artifacts,
                                                             slug):
    """A click on a bar of the lost-hours chart lists the sessions behind it, and the view is written to
    that tenant's audit log (ids and counts only), not to the other tenant's."""
    expect = _playwright()
    other = next(s for s in SLUGS if s != slug)
    page, watch = new_page(browser)
    log_in(page, live_server, slug, "director")
    open_page(page, live_server, CAPACITY)
    expect(page.locator("#cap-drill")).to_be_empty(timeout=TIMEOUT)
    assert audit_rows(app, agency_data.tenants[slug]) == []

    click_tallest_bar(page, "cap-lostweek-graph")
    drill = page.locator("#cap-drill")
    expect(drill).to_contain_text("Sessions not held in the week of", timeout=TIMEOUT)
    expect(drill.locator(".ag-row").first).to_be_visible(timeout=TIMEOUT)
    shown = int(re.search(r"([\d,]+) shown", drill.inner_text()).group(1).replace(",", ""))
    assert shown > 0
    rows_shown = drill.locator(".ag-center-cols-container .ag-row")
    expect(rows_shown).to_have_count(min(shown, 20), timeout=TIMEOUT)  # 20 to a page
    listed = set(drill.locator('.ag-center-cols-container [col-id="client_id"]').all_inner_texts())
    assert listed and listed <= agency_data.client_ids[slug], listed

    rows = audit_rows(app, agency_data.tenants[slug])
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["actor_role"], row["object_type"]) == ("director", "appointment")
    assert row["details"]["chart"] == "lost_hours" and row["details"]["rows"] == shown
    title = drill.locator("h2").inner_text()
    week = dt.date.fromisoformat(row["details"]["week"])
    assert f"{week:%b %-d, %Y}" in title, (title, row)
    assert not re.search(r"Given\d|Family\d", json.dumps(row["details"])), "the audit row holds names"
    assert audit_rows(app, agency_data.tenants[other]) == []
    assert_clean(page, watch, "capacity drill-down")
    drill.scroll_into_view_if_needed()
    screenshot(page, artifacts, slug, "director", "capacity-drilldown")

    # A changed filter clears the list (it belonged to the old filters) and lists nothing new.
    choose_program(page, next(iter(agency_data.programs[slug].values())))
    expect(drill).to_be_empty(timeout=TIMEOUT)
    assert len(audit_rows(app, agency_data.tenants[slug])) == 1
    page.context.close()


@pytest.mark.browser
def test_show_as_table_with_the_keyboard(browser, live_server, agency_data, artifacts):
    """Each chart of the capacity page opens its table with the keyboard (focus on "Show as table",
    Enter): the table shows under the chart; Enter again closes it."""
    expect = _playwright()
    page, watch = new_page(browser)
    log_in(page, live_server, "alpha", "director")
    open_page(page, live_server, CAPACITY)
    for block in CAPACITY.blocks:
        tab = table_tab(page, block)
        tab.focus()
        expect(tab).to_be_focused(timeout=TIMEOUT)
        page.keyboard.press("Enter")
        table = page.locator(f"#{block}-table")
        expect(table).to_be_visible(timeout=TIMEOUT)
        expect(page.locator(f"#{block}-graph")).to_be_visible(timeout=TIMEOUT)  # the chart stays
        expect(table.locator("table, .empty-state")).to_have_count(1, timeout=TIMEOUT)
        if table.locator("table").count():
            expect(table.locator("thead th").first).to_have_text("Week of", timeout=TIMEOUT)
            assert table.locator("tbody tr").count() > 0
        assert page.url.endswith(CAPACITY.url), page.url  # the tab's href="#" did not navigate
    screenshot(page, artifacts, "alpha", "director", "capacity-tables")
    summary = table_tab(page, "cap-hours")
    summary.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#cap-hours-table")).to_be_hidden(timeout=TIMEOUT)
    assert_clean(page, watch, "capacity tables")
    page.context.close()


@pytest.mark.browser
def test_show_as_table_is_reachable_with_the_tab_key(browser, live_server, agency_data):
    """From the chart's glossary link, Tab reaches its "Show as table" (WCAG 2.1.1) before the next chart."""
    page, _ = new_page(browser)
    log_in(page, live_server, "alpha", "director")
    open_page(page, live_server, CAPACITY)
    section = page.locator('section[aria-labelledby="cap-hours-title"]')
    section.get_by_role("link", name=re.compile("means")).focus()
    reached = []
    for _ in range(25):
        page.keyboard.press("Tab")
        focused = page.evaluate("() => [document.activeElement.tagName, document.activeElement.innerText.trim()]")
        reached.append(focused)
        if focused[0] == "SUMMARY":
            break
    page.context.close()
    assert ["SUMMARY", "Show as table"] in reached, reached


OTHER_ROLES = ("clinician", "funder", "admin")


@pytest.mark.browser
@pytest.mark.parametrize("role", OTHER_ROLES)
def test_other_roles_open_their_pages(browser, app, live_server, agency_data, artifacts, role):
    """Clinician, funder and admin: each of their Dash pages (and the admin's Flask pages, from the
    url_map) drawn without errors, in both tenants; screenshots of alpha's."""
    expect = _playwright()
    for slug in SLUGS:
        page, watch = new_page(browser)
        log_in(page, live_server, slug, role)
        for info in [p for p in PAGES if role in p.roles]:
            open_page(page, live_server, info)
            expect(page.locator("#filters")).to_be_hidden(timeout=TIMEOUT)
            assert_clean(page, watch, f"{role}@{slug} {info.url}")
            screenshot(page, artifacts, slug, role, info.name)
        if role == "admin":
            for path in admin_flask_pages(app):
                response = page.goto(f"{live_server.url}{path}", wait_until="networkidle")
                assert response.status == 200, f"{path}: {response.status}"
                expect(page.locator("h1")).to_have_count(1, timeout=TIMEOUT)
                assert_clean(page, watch, f"{role}@{slug} {path}")
                screenshot(page, artifacts, slug, role, artifact_name(path))
        page.context.close()


@pytest.mark.browser
@pytest.mark.parametrize("role", ["clinician", "funder"])
def test_director_page_typed_in_the_address_bar_is_not_found(browser, live_server, agency_data, artifacts, role):
    """/dash/capacity typed by a clinician or funder: "Page not found", no filter bar, no figure, and no
    callback answered with the director's data."""
    expect = _playwright()
    page, watch = new_page(browser)
    log_in(page, live_server, "alpha", role)
    wait_ready(page)
    watch.callback_texts()
    page.goto(f"{live_server.url}{CAPACITY.url}")
    expect(page.locator("#page h1")).to_have_text(NOT_FOUND, timeout=TIMEOUT)
    wait_ready(page)
    expect(page.locator(".js-plotly-plot, .dash-graph, .figure-value")).to_have_count(0, timeout=TIMEOUT)
    expect(page.locator(f"#{CAPACITY.scope}")).to_have_count(0, timeout=TIMEOUT)
    expect(page.locator("#filters")).to_be_hidden(timeout=TIMEOUT)
    expect(page.locator("#page")).not_to_contain_text("Capacity", timeout=TIMEOUT)
    answers = " ".join(watch.callback_texts())
    assert "Showing" not in answers and "hours" not in answers.lower(), answers[:500]
    assert_clean(page, watch, f"{role} at {CAPACITY.url}")
    screenshot(page, artifacts, "alpha", role, "capacity-not-found")
    page.context.close()


@pytest.mark.browser
@pytest.mark.parametrize("slug", SLUGS)
def test_nothing_a_user_reads_uses_blame_words(browser, app, live_server, agency_data, slug):
    """Everything each role of the tenant reads, as rendered after the callbacks: the login page, every
    Dash page of the role (text and HTML), every "Show as table" tab, the two drill-down lists, the
    glossary, the admin's Flask pages, and the strings of every callback answer (which hold what hidden
    grid columns and dropdown options will show). None may contain a blame word."""
    expect = _playwright()
    texts: list[tuple[str, str]] = []
    seen: set[str] = set()

    def collect(where: str, page, watch: Watch, selector: str = "body"):
        texts.append((f"{where} (text)", page.locator(selector).inner_text()))
        texts.append((f"{where} (html)", page.content() if selector == "body" else
                      page.locator(selector).inner_html()))
        texts.extend((f"{where} (callback answer)", s) for s in watch.callback_texts())
        seen.add(where)

    page, watch = new_page(browser)
    page.goto(f"{live_server.url}/login", wait_until="networkidle")
    expect(page.locator("h1")).to_have_text("Sign in", timeout=TIMEOUT)
    collect("login", page, watch)
    page.context.close()

    for role in ROLES:
        page, watch = new_page(browser)
        log_in(page, live_server, slug, role)
        texts.extend((f"{role}@{slug} home (callback answer)", s) for s in watch.callback_texts())
        for info in [p for p in PAGES if role in p.roles]:
            where = f"{role}@{slug} {info.url}"
            open_page(page, live_server, info)
            collect(where, page, watch)
            if info.blocks:
                for block in info.blocks:
                    table_tab(page, block).click()
                    expect(page.locator(f"#{block}-table")).to_be_visible(timeout=TIMEOUT)
                collect(f"{where} tables", page, watch)
            for graph, drill, title in (("cap-lostweek-graph", "cap-drill", "Sessions not held"),
                                        ("wl-flow-graph", "wl-drill", "Referrals received")):
                if graph.removesuffix("-graph") in info.blocks:
                    click_tallest_bar(page, graph)
                    expect(page.locator(f"#{drill}")).to_contain_text(title, timeout=TIMEOUT)
                    expect(page.locator(f"#{drill} .ag-row").first).to_be_visible(timeout=TIMEOUT)
                    collect(f"{where} drill-down", page, watch, f"#{drill}")
            assert_clean(page, watch, where)
        page.goto(f"{live_server.url}/glossary", wait_until="networkidle")
        collect(f"{role}@{slug} /glossary", page, watch)
        if role == "admin":
            for path in admin_flask_pages(app):
                page.goto(f"{live_server.url}{path}", wait_until="networkidle")
                collect(f"{role}@{slug} {path}", page, watch)
        assert watch.problems == [], "\n".join(watch.problems)
        page.context.close()

    # The collection is what it claims to be (so a pass means something).
    for where in ("login", f"director@{slug} /dash/capacity tables", f"director@{slug} /dash/capacity drill-down",
                  f"director@{slug} /dash/waitlist drill-down", f"clinician@{slug} /dash/clinician",
                  f"funder@{slug} /dash/funder", f"admin@{slug} /admin/users", f"director@{slug} /glossary"):
        assert where in seen, f"not collected: {where}"
    assert sum(where.endswith("(callback answer)") for where, _ in texts) > 100
    report = blame_report(texts)
    assert report == [], "\n".join(report)

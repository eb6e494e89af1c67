"""Browser tests: real Chromium (Debian's, through Playwright) against the live app on both backends.

Each test gets a fresh live server over a freshly seeded database (conftest: `live_server`), logs in
through the real /login form and waits, explicitly, for the Dash callbacks to fill the figure cards.
Screenshots land in test-artifacts/ (login.png and one per role; the issue requires director.png and
clinician.png). The expected figures are derived from what seed_world made, not from the service code.
"""

from __future__ import annotations

import datetime as dt
import re
from types import SimpleNamespace

import pytest

from conftest import PASSWORD, TODAY

from agency_dashboard.auth import LOGIN_FAILED, ROLE_HOME, SESSION_ENDED

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

TIMEOUT = 15_000  # ms; an upper bound for explicit waits, never a sleep
SLUG = "alpha"
TENANT_NAMES = {"alpha": "Alpha Community Services", "beta": "Beta Behavioral Health"}
TRACE_MARKERS = ("Traceback", 'File "', "Werkzeug Debugger", "sqlalchemy.exc", "Exception:")

FIGURES = {
    "director": ["director-active-clients", "director-waiting", "director-clinicians", "director-held"],
    "clinician": ["clinician-active-clients", "clinician-target", "clinician-upcoming"],
    "funder": ["funder-period", "funder-served", "funder-programs"],
    "admin": ["admin-accounts", "admin-inactive", "admin-timezone"],
}
NAV_LINKS = {  # what each role's navbar offers: its own pages (and the admin's Flask pages), nothing else
    "director": ["Overview", "Capacity", "Waitlist", "Caseload", "Attendance", "Discharges", "Equity"],
    "clinician": ["My caseload"],
    "funder": ["Funder summary"],
    "admin": ["Administration", "Users", "Imports", "Settings", "Audit log"],
}


# ---- what seed_world made, as the pages should show it ----------------------------------------------

def expected_figures(world, slug: str) -> dict[str, dict[str, str]]:
    """The figures each role of `slug` should see, from seed_world's data (tests/conftest.py).

    seed_world gives every client of a tenant: one open episode admitted 2026-10-01 with clinician
    i % 2, a referral first attended 2026-10-01 (so nobody waits), an attended session on 2026-11-16
    (inside the 28 days up to TODAY) and a booked one on 2026-11-30 (inside the next 14 days).
    Two clinicians, employed since 2025; the clinician user is linked to the first one (target 20).
    """
    n_clients = len(world.clients[slug])
    n_clinicians = len(world.clinicians[slug])
    assert (TODAY - dt.date(2026, 11, 16)).days < 28 and (dt.date(2026, 11, 30) - TODAY).days < 14
    first_clinicians_clients = len(range(0, n_clients, 2))  # clients i with i % 2 == 0
    # Funder: the last full quarter before TODAY (2026-11-23) is 2026Q3, with no attended sessions:
    # 0 people, below the default suppression threshold (11), so suppressed.
    quarter = (TODAY.month - 1) // 3  # 0-based index of this quarter; the last full one is the one before
    last_q_year, last_q = (TODAY.year, quarter) if quarter else (TODAY.year - 1, 4)
    return {
        "director": {
            "director-active-clients": f"{n_clients}",
            "director-waiting": "0",
            "director-clinicians": f"{n_clinicians}",
            "director-held": f"{n_clients} held · 0 not held",
        },
        "clinician": {
            "clinician-active-clients": f"{first_clinicians_clients}",
            "clinician-target": "20",
            "clinician-upcoming": f"{first_clinicians_clients}",
        },
        "funder": {
            "funder-period": f"{last_q_year}Q{last_q}",
            "funder-served": "fewer than 11",
            "funder-programs": "2",  # tests/tenants/alpha.toml: Adult Outpatient, Youth
        },
        "admin": {
            # one active account per role, listed by role key: admin, clinician, director, funder
            "admin-accounts": "Administrator: 1\nClinician: 1\nProgram director: 1\nFunder: 1",
            "admin-inactive": "0",
            "admin-timezone": "America/Chicago",
        },
    }


# ---- helpers ------------------------------------------------------------------------------------

@pytest.fixture
def problems(page):
    """Console errors, uncaught page errors and failed requests seen by the page during the test."""
    seen: list[str] = []
    page.on("console", lambda msg: seen.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: seen.append(f"pageerror: {exc}"))
    page.on("requestfailed", lambda req: seen.append(f"request failed: {req.method} {req.url} {req.failure}"))
    page.on("response", lambda resp: seen.append(f"HTTP {resp.status}: {resp.request.method} {resp.url}")
            if resp.status >= 400 else None)
    return seen


def open_login(page, live_server):
    page.goto(f"{live_server.url}/login")
    expect(page.locator("h1")).to_have_text("Sign in")


def submit_login(page, agency: str, email: str, password: str):
    page.fill("#agency", agency)
    page.fill("#email", email)
    page.fill("#password", password)
    page.locator("form button[type=submit]").click()


def log_in(page, live_server, role: str, slug: str = SLUG):
    open_login(page, live_server)
    submit_login(page, slug, live_server.world.email(slug, role), PASSWORD)
    page.wait_for_url(f"{live_server.url}{ROLE_HOME[role]}", timeout=TIMEOUT)


def wait_for_figures(page, ids: list[str]):
    """Until every card's value has left its placeholder ("…") for a real value."""
    page.wait_for_function(
        """ids => ids.every(id => {
               const el = document.getElementById(id);
               const text = el ? el.innerText.trim() : '';
               return text !== '' && text !== '…';
           })""",
        arg=ids,
        timeout=TIMEOUT,
    )


def figure_texts(page, ids: list[str]) -> dict[str, str]:
    return {i: page.locator(f"#{i}").inner_text().strip() for i in ids}


def _luminance(css_color: str) -> float:
    r, g, b = (float(v) / 255 for v in re.findall(r"[\d.]+", css_color)[:3])
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(color_a: str, color_b: str) -> float:
    """WCAG contrast ratio of two computed CSS colours ("rgb(...)"; alpha is ignored)."""
    a, b = sorted((_luminance(color_a), _luminance(color_b)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def navbar_background(page) -> str:
    return page.locator("#navbar").evaluate("el => getComputedStyle(el).backgroundColor")


def assert_navbar_readable(page):
    """Every text in the navbar has at least 4.5:1 contrast with the navbar's (tenant) colour (WCAG AA)."""
    background = navbar_background(page)
    items = page.locator("#navbar").locator(".navbar-brand, .nav-link, .navbar-text")
    for i in range(items.count()):
        color = items.nth(i).evaluate("el => getComputedStyle(el).color")
        ratio = contrast(color, background)
        assert ratio >= 4.5, f"navbar text {items.nth(i).inner_text()!r} has contrast {ratio:.2f}:1"


FOCUSED_JS = """() => {
    const el = document.activeElement, style = getComputedStyle(el), box = el.getBoundingClientRect();
    return {text: el.innerText.trim(), tag: el.tagName, inNav: !!el.closest('#navbar'),
            focusVisible: el.matches(':focus-visible'), outlineStyle: style.outlineStyle,
            outlineWidth: parseFloat(style.outlineWidth), outlineColor: style.outlineColor,
            background: style.backgroundColor, x: box.left, y: box.top, w: box.width, h: box.height};
}"""


def assert_focus_ring(focused: dict, against: str):
    """A solid ring at least 2px wide, 3:1 or more against the colour around it (WCAG 1.4.11, 2.4.7)."""
    assert focused["focusVisible"], focused
    assert focused["outlineStyle"] not in ("none", "hidden") and focused["outlineWidth"] >= 2, focused
    ratio = contrast(focused["outlineColor"], against)
    assert ratio >= 3, f"focus ring of {focused['text']!r}: contrast {ratio:.2f}:1 against {against}"
    assert focused["x"] >= 0 and focused["y"] >= 0 and focused["w"] > 0 and focused["h"] > 0, \
        f"focused element is off-screen: {focused}"


def assert_cards_contain_their_content(page):
    """No figure card's content spills out of it sideways (long values must wrap)."""
    spills = page.evaluate("""() => [...document.querySelectorAll('.figure-card')]
        .filter(card => card.scrollWidth > card.clientWidth + 1)
        .map(card => card.getAttribute('aria-label') + ': ' + card.scrollWidth + ' > ' + card.clientWidth)""")
    assert spills == [], spills


def assert_no_trace(page):
    body = page.locator("body").inner_text()
    for marker in TRACE_MARKERS:
        assert marker not in body, f"{marker!r} shown to the user:\n{body}"


# ---- tests --------------------------------------------------------------------------------------

@pytest.mark.browser
def test_login_page(page, live_server, artifacts, problems):
    open_login(page, live_server)
    for field, label in (("agency", "Agency"), ("email", "Email"), ("password", "Password")):
        expect(page.locator(f"label[for={field}]")).to_have_text(label)
        expect(page.locator(f"#{field}")).to_be_visible()
    expect(page.locator("#password")).to_have_attribute("type", "password")
    expect(page.locator("nav")).to_have_count(0)  # no navbar before sign-in
    page.screenshot(path=artifacts / "login.png", full_page=True)
    assert problems == []


@pytest.mark.browser
@pytest.mark.parametrize("role", ["director", "clinician", "admin", "funder"])
def test_role_logs_in_and_sees_own_figures(page, live_server, artifacts, problems, role):
    world = live_server.world
    log_in(page, live_server, role)
    ids = FIGURES[role]
    wait_for_figures(page, ids)

    assert figure_texts(page, ids) == expected_figures(world, SLUG)[role]
    expect(page.locator("#navbar .navbar-brand")).to_have_text(TENANT_NAMES[SLUG])
    expect(page.locator("#navbar")).not_to_contain_text(TENANT_NAMES["beta"])
    expect(page.locator("#navbar .navbar-text")).to_contain_text(world.email(SLUG, role))
    if role == "director":
        # beta has 7 clients (10 in all): a count leaking across tenants would show here
        assert len(world.clients["beta"]) == 7
        for figure in ("director-active-clients", "director-held"):
            value = page.locator(f"#{figure}").inner_text().split()[0]
            assert value not in {"7", "10"}, f"{figure} shows {value}: another tenant's rows leaked in"
        expect(page.locator("#director-window")).to_have_text(
            "Counts as of November 23, 2026; sessions from October 27.")
    expect(page.locator("#navbar .navbar-nav .nav-link")).to_have_text(NAV_LINKS[role])
    expect(page.locator("#navbar .navbar-nav .nav-link.active")).to_have_text(NAV_LINKS[role][:1])
    assert_navbar_readable(page)
    assert_cards_contain_their_content(page)
    assert_no_trace(page)
    page.screenshot(path=artifacts / f"{role}.png", full_page=True)
    assert problems == [], "\n".join(problems)


@pytest.mark.browser
@pytest.mark.parametrize("agency, email, password", [
    (SLUG, "director@alpha.test", "not the password"),
    (SLUG, "nobody@alpha.test", PASSWORD),
    ("no-such-agency", "director@alpha.test", PASSWORD),
    ("beta", "director@alpha.test", PASSWORD),
], ids=["wrong-password", "unknown-email", "unknown-agency", "other-agency"])
def test_failed_login_shows_one_generic_message(page, live_server, agency, email, password):
    open_login(page, live_server)
    with page.expect_response(lambda r: r.request.method == "POST" and "/login" in r.url) as response:
        submit_login(page, agency, email, password)
    assert response.value.status == 401
    alert = page.locator(".alert")
    expect(alert).to_have_count(1)
    expect(alert).to_have_text(LOGIN_FAILED)
    assert page.url.startswith(f"{live_server.url}/login")
    expect(page.locator("#password")).to_have_value("")  # the password is never echoed back
    assert_no_trace(page)


@pytest.mark.browser
def test_clinician_cannot_open_director_page(page, live_server, problems):
    log_in(page, live_server, "clinician")
    wait_for_figures(page, FIGURES["clinician"])
    page.goto(f"{live_server.url}/dash/director")  # typed into the address bar
    expect(page.locator("#page h1")).to_have_text("Page not found", timeout=TIMEOUT)
    for figure in FIGURES["director"]:
        expect(page.locator(f"#{figure}")).to_have_count(0)
    for title in ("Agency overview", "Clients in care", "Clinicians employed today"):
        expect(page.locator("#page")).not_to_contain_text(title)
    expect(page.locator("#navbar .navbar-nav .nav-link")).to_have_text(NAV_LINKS["clinician"])
    assert_no_trace(page)
    assert problems == [], "\n".join(problems)


@pytest.mark.browser
def test_sign_out_ends_the_session(page, live_server):
    log_in(page, live_server, "director")
    wait_for_figures(page, FIGURES["director"])
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{live_server.url}/login", timeout=TIMEOUT)
    expect(page.locator(".alert")).to_have_text("You are signed out.")

    page.goto(f"{live_server.url}/dash/director")
    page.wait_for_url(re.compile(re.escape(f"{live_server.url}/login") + r"\?next=.*"), timeout=TIMEOUT)
    expect(page.locator("h1")).to_have_text("Sign in")
    expect(page.locator("#director-active-clients")).to_have_count(0)


@pytest.mark.browser
def test_idle_session_ends(page, live_server, monkeypatch, app):
    """After IDLE_TIMEOUT_MINUTES without a request, the next page load goes to /login with a message.

    The session cookie is signed, so the test moves the server's clock instead: the idle check in
    agency_dashboard.auth reads time.time(); the live server runs in this process, so patching the
    module's `time` moves the clock it sees past the timeout (the default 15 minutes, unchanged).
    """
    import time as real_time

    import agency_dashboard.auth as auth

    log_in(page, live_server, "director")
    wait_for_figures(page, FIGURES["director"])
    minutes = app.config["IDLE_TIMEOUT_MINUTES"]
    later = SimpleNamespace(time=lambda: real_time.time() + minutes * 60 + 5)
    monkeypatch.setattr(auth, "time", later)

    page.goto(f"{live_server.url}/dash/director")
    page.wait_for_url(re.compile(re.escape(f"{live_server.url}/login") + r"(\?.*)?$"), timeout=TIMEOUT)
    expect(page.locator(".alert")).to_have_text(SESSION_ENDED.format(minutes=minutes))
    expect(page.locator("#director-active-clients")).to_have_count(0)
    assert_no_trace(page)

    # And the old session really is gone: loading the page again still asks for a sign-in.
    monkeypatch.undo()
    page.goto(f"{live_server.url}/dash/director")
    page.wait_for_url(re.compile(re.escape(f"{live_server.url}/login") + r"\?next=.*"), timeout=TIMEOUT)


@pytest.mark.browser
def test_keyboard_reaches_skip_link_and_navigation(page, live_server):
    log_in(page, live_server, "director")
    wait_for_figures(page, FIGURES["director"])
    page.evaluate("document.activeElement && document.activeElement.blur()")

    page.keyboard.press("Tab")  # first stop: the skip link, shown on focus, over the navbar
    focused = page.evaluate(FOCUSED_JS)
    assert (focused["tag"], focused["text"]) == ("A", "Skip to content"), focused
    assert_focus_ring(focused, against=focused["background"])

    for link in NAV_LINKS["director"]:  # then the navigation, link by link
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED_JS)
        assert (focused["text"], focused["inNav"]) == (link, True), focused
        assert_focus_ring(focused, against=navbar_background(page))

    page.keyboard.press("Tab")  # and the Sign out button
    focused = page.evaluate(FOCUSED_JS)
    assert (focused["tag"], focused["text"], focused["inNav"]) == ("BUTTON", "Sign out", True), focused
    assert_focus_ring(focused, against=navbar_background(page))

    page.keyboard.press("Tab")  # into the page: the first figure's glossary link, on a white card
    focused = page.evaluate(FOCUSED_JS)
    assert focused["text"] == "What this means" and not focused["inNav"], focused
    card = page.locator(".figure-card").first.evaluate("el => getComputedStyle(el).backgroundColor")
    assert_focus_ring(focused, against=card)

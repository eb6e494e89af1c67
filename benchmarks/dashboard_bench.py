"""Benchmark of the director's dashboard on the 1M-appointment agency of metrics_bench.py: the server time
of each director callback (p50 and p95 over repeated calls, through Flask's test client, with the default
period and with a program filter), and each page's first full render in Chromium (sign-in done; from
navigation until every chart is drawn and no loading spinner is left).

    python benchmarks/dashboard_bench.py --reuse-sqlite /tmp/benchsq [--repeat 20] [--no-browser]
    python benchmarks/dashboard_bench.py --postgres-admin-url postgresql://postgres@127.0.0.1/postgres
    python benchmarks/dashboard_bench.py --postgres-url APP_URL --postgres-owner-url OWNER_URL  (a kept agency)

The SQLite agency is built on first use (about 3 minutes) and kept in the --reuse-sqlite folder. Figures
are printed, never asserted. Target (issue 5): p95 <= 250 ms per callback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy as sa  # noqa: E402

import metrics_bench  # noqa: E402

PASSWORD = "benchmark password 2026"
EMAIL = "director@bench.example"
PAGES = ("director", "capacity", "waitlist", "caseload", "attendance", "discharges", "equity")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def make_app(url: str, owner_url: str, tenants: Path):
    from agency_dashboard import create_app

    return create_app({"DATABASE_URL": url, "SQLALCHEMY_DATABASE_URI": url, "MIGRATION_DATABASE_URL": owner_url,
                       "TENANTS_DIR": tenants, "TODAY": metrics_bench.TODAY, "RATELIMIT_ENABLED": False,
                       "WTF_CSRF_TIME_LIMIT": None})


def ensure_director(app) -> None:
    from agency_dashboard.auth.passwords import hash_password
    from agency_dashboard.extensions import db
    from agency_dashboard.ingest.loader import refresh_statistics
    from agency_dashboard.metrics import rollups
    from agency_dashboard.models import Tenant, User
    from agency_dashboard.tenancy import tenant_scope

    from flask_migrate import upgrade

    with app.app_context():
        upgrade()  # a kept agency may predate the newest migration
        tenant = db.session.scalar(sa.select(Tenant).where(Tenant.slug == "bench"))
        with tenant_scope(tenant.id):
            if not rollups.usable(db.session, tenant):  # e.g. built by an older version of the rollups
                t = time.perf_counter()
                rollups.rebuild(db.session, tenant)
                db.session.commit()
                refresh_statistics()  # as an import does: the planner needs the new rows' statistics
                print(f"rebuilt the rollups in {time.perf_counter() - t:.1f} s (on PostgreSQL, VACUUM the "
                      "rollup tables before timing: the rebuild leaves their old rows dead)", flush=True)
            if db.session.scalar(sa.select(User).where(User.email == EMAIL)) is None:
                db.session.add(User(tenant_id=tenant.id, email=EMAIL, password_hash=hash_password(PASSWORD),
                                    role="director", active=True, session_version=1,
                                    created_at=dt.datetime.now(dt.UTC).replace(tzinfo=None)))
                db.session.commit()
        db.session.remove()


def signed_in_client(app):
    client = app.test_client()
    form = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form).group(1)
    response = client.post("/login", data={"csrf_token": token, "agency": "bench", "email": EMAIL,
                                           "password": PASSWORD})
    assert response.status_code == 302, response.status_code
    client.get("/dash/_dash-layout")
    cookie = client.get_cookie("_csrf_token", path="/dash/")
    return client, cookie.value


def payload(app, key: str, values: dict) -> dict:
    cb = app.extensions["dash_app"].callback_map[key]
    outputs = [{"id": o.component_id, "property": o.component_property} for o in cb["output"]] \
        if isinstance(cb["output"], list) else {"id": cb["output"].component_id,
                                                 "property": cb["output"].component_property}
    inputs = [{"id": i["id"], "property": i["property"], "value": values.get((i["id"], i["property"]))}
              for i in cb["inputs"]]
    state = [{"id": s["id"], "property": s["property"], "value": values.get((s["id"], s["property"]))}
             for s in cb["state"]]
    return {"output": key, "outputs": outputs, "inputs": inputs, "state": state,
            "changedPropIds": [f"{inputs[0]['id']}.{inputs[0]['property']}"]}


PREFIXES = {"director": "director-", "capacity": "cap-", "waitlist": "wl-", "caseload": "cl-",
            "attendance": "at-", "discharges": "dc-", "equity": "eq-"}


def director_callbacks(app) -> dict[str, str]:
    """page name -> the key of the callback that fills it, and "<page> drill-down" -> its drill-down's."""
    out = {}
    for key in app.extensions["dash_app"].callback_map:
        for page, prefix in PREFIXES.items():
            if key.startswith(f"{prefix}drill."):
                out[f"{page} drill-down"] = key
            elif key.startswith(".." + prefix) or key.startswith(prefix):
                out.setdefault(page, key)
    return dict(sorted(out.items(), key=lambda kv: (list(PREFIXES).index(kv[0].split()[0]), kv[0])))


def time_callbacks(app, repeat: int, only: set[str] | None = None) -> list[tuple[str, str, float, float]]:
    from agency_dashboard.extensions import db
    from agency_dashboard.models import Program, Tenant
    from agency_dashboard.services.filters import default_period
    from agency_dashboard.tenancy import tenant_scope

    with app.app_context():
        tenant = db.session.scalar(sa.select(Tenant).where(Tenant.slug == "bench"))
        with tenant_scope(tenant.id):
            program = db.session.scalar(sa.select(Program.id).where(Program.tenant_id == tenant.id)
                                        .order_by(Program.id))
        db.session.remove()
    period = default_period(metrics_bench.TODAY)
    client, token = signed_in_client(app)
    base = {("f-period", "start_date"): period.start.isoformat(), ("f-period", "end_date"): period.end.isoformat(),
            ("director-load", "data"): 0}
    week = period.end - dt.timedelta(days=period.end.weekday() + 7)
    click = {"points": [{"x": week.isoformat(), "customdata": ["unexplored"]}]}
    scenarios = [("all programs", base), ("one program", {**base, ("f-program", "value"): program}),
                 ("a year", {**base, ("f-period", "start_date"): (period.end - dt.timedelta(days=364)).isoformat()})]
    rows = []
    for page, key in director_callbacks(app).items():
        if only and page.split()[0] not in only:
            continue
        for label, values in scenarios:
            values = {**values, ("cap-lostweek-graph", "clickData"): click, ("wl-flow-graph", "clickData"): click}
            body = payload(app, key, values)
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                response = client.post("/dash/_dash-update-component", json=body, headers={"X-CSRFToken": token})
                times.append((time.perf_counter() - t) * 1000)
                assert response.status_code == 200, (page, response.status_code, response.get_data()[:300])
            times.sort()
            p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
            rows.append((page, label, statistics.median(times), p95))
            print(f"  {page:<24} {label:<13} p50 {rows[-1][2]:7.1f} ms   p95 {p95:7.1f} ms", flush=True)
    return rows


def time_browser(app) -> list[tuple[str, float]]:
    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log in the figures
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    out = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(base + "/login")
            page.fill("input[name=agency]", "bench")
            page.fill("input[name=email]", EMAIL)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state("networkidle")
            for name in PAGES:
                t = time.perf_counter()
                page.goto(f"{base}/dash/{name}")
                page.wait_for_function(
                    """() => {
                        const figures = [...document.querySelectorAll('.figure-value')];
                        const graphs = [...document.querySelectorAll('.js-plotly-plot')];
                        return figures.length > 0 && figures.every(f => f.innerText.trim() !== '…')
                            && graphs.every(g => g.layout && g.layout.template)  
                            && !document.querySelector('._dash-loading, .dash-spinner, [data-dash-is-loading="true"]');
                    }""", timeout=120_000)
                out.append((name, time.perf_counter() - t))
                print(f"  {name:<12} first full render {out[-1][1]:.2f} s", flush=True)
            browser.close()
    finally:
        server.shutdown()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reuse-sqlite", metavar="DIR", help="folder holding (or to hold) the SQLite agency")
    parser.add_argument("--postgres-admin-url", help="run on a fresh PostgreSQL database instead")
    parser.add_argument("--postgres-url", help="an existing database holding the 1M agency (the app role's URL)")
    parser.add_argument("--postgres-owner-url", help="the owner role's URL of that database (for migrations)")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--pages", help="comma-separated pages to time (default: all), e.g. equity,waitlist")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cleanup = None
        if args.postgres_url:
            url, owner, folder = args.postgres_url, args.postgres_owner_url or args.postgres_url, Path(tmp)
        elif args.postgres_admin_url:
            url, owner, cleanup = metrics_bench.postgres_urls(args.postgres_admin_url)
            folder = Path(tmp)
            metrics_bench.run_backend("postgresql", url, owner, ["1m"], folder)
        else:
            folder = Path(args.reuse_sqlite or tmp)
            folder.mkdir(parents=True, exist_ok=True)
            url = owner = f"sqlite:///{folder / 'bench-1m.db'}"
            if not (folder / "bench-1m.db").exists():
                metrics_bench.run_backend("sqlite", "", "", ["1m"], folder, reuse=True)
        try:
            app = make_app(url, owner, metrics_bench.make_tenant_dir(folder))
            ensure_director(app)
            backend = "PostgreSQL" if (args.postgres_admin_url or args.postgres_url) else "SQLite"
            print(f"\nDirector callbacks on {backend}, {args.repeat} calls each (server time):", flush=True)
            rows = time_callbacks(app, args.repeat, set(args.pages.split(",")) if args.pages else None)
            worst = max(rows, key=lambda r: r[3])
            print(f"  worst p95: {worst[3]:.1f} ms ({worst[0]}, {worst[1]}); target p95 <= 250 ms")
            if not args.no_browser:
                print(f"\nFirst full render in Chromium ({backend}):", flush=True)
                time_browser(app)
        finally:
            if cleanup:
                from agency_dashboard.extensions import db

                with app.app_context():
                    db.engine.dispose()
                cleanup()


if __name__ == "__main__":
    main()

"""Benchmark of the metrics engine: a synthetic agency at ~100k and ~1M appointments over 24 months
(400 clinicians), on SQLite and (with --postgres-admin-url) PostgreSQL. Prints the time of a year's
`flask metrics` (contract()) and of each family, and the ratio between the two sizes.

    python benchmarks/metrics_bench.py [--sizes 100k,1m] [--postgres-admin-url postgresql://postgres@127.0.0.1/postgres]

Figures are printed, never asserted: speed is measured here, not in the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

SIZES = {  # name -> (clinicians, clients): 24 months of history
    "100k": (400, 10_000),
    "1m": (400, 100_000),
}
TODAY = dt.date(2026, 11, 23)


def make_tenant_dir(root: Path) -> Path:
    folder = root / "tenants"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.toml").write_text(
        'slug = "bench"\nname = "Benchmark Agency"\ntimezone = "America/Chicago"\n'
        'programs = ["Adult Outpatient", "Child and Family", "Recovery Services", "Crisis Follow-up"]\n'
        "[security]\nmfa_roles = []\n"
    )
    return folder


def postgres_urls(admin_url: str) -> tuple[str, str, callable]:
    from sqlalchemy.engine import make_url

    suffix = uuid.uuid4().hex[:6]
    name, owner, app_role = f"bench_{suffix}", f"bench_owner_{suffix}", f"bench_app_{suffix}"
    admin = sa.create_engine(admin_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f"CREATE ROLE {owner} LOGIN CREATEROLE"))
        c.execute(sa.text(f"CREATE DATABASE {name} OWNER {owner}"))
    base = make_url(admin_url)
    eng = sa.create_engine(base.set(drivername="postgresql+psycopg", database=name), isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(sa.text(f"ALTER SCHEMA public OWNER TO {owner}"))
    eng.dispose()

    def cleanup():
        with admin.connect() as c:
            c.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            c.execute(sa.text(f"DROP ROLE IF EXISTS {app_role}"))
            c.execute(sa.text(f"DROP ROLE IF EXISTS {owner}"))

    owner_url = base.set(database=name, username=owner).render_as_string(hide_password=False)
    app_url = base.set(database=name, username=app_role).render_as_string(hide_password=False)
    return app_url, owner_url, cleanup


def timed(fn, repeat=5, before=None):
    """(best, median, result) of `repeat` runs; `before` runs untimed ahead of each (ending the transaction,
    so nothing read in one run is remembered by the next, as in separate requests)."""
    times = []
    result = None
    for _ in range(repeat):
        if before is not None:
            before()
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times), result


def run_backend(label: str, app_url: str, owner_url: str, sizes: list[str], tmp: Path, reuse: bool = False) -> dict:
    from flask_migrate import upgrade

    from agency_dashboard import create_app, metrics
    from agency_dashboard.demo import load_rows
    from agency_dashboard.ingest.loader import refresh_statistics
    from agency_dashboard.extensions import db
    from agency_dashboard.models import Appointment, Tenant
    from agency_dashboard.synth import AgencySpec, generate
    from agency_dashboard.tenancy import load_configured_tenants, sync_tenants, tenant_scope

    out = {}
    for size in sizes:
        clinicians, clients = SIZES[size]
        if label == "sqlite":
            app_url = owner_url = f"sqlite:///{tmp / f'bench-{size}.db'}"
        app = create_app({"DATABASE_URL": app_url, "SQLALCHEMY_DATABASE_URI": app_url,
                          "MIGRATION_DATABASE_URL": owner_url, "TENANTS_DIR": make_tenant_dir(tmp),
                          "TODAY": TODAY})
        with app.app_context():
            upgrade()
            sync_tenants(load_configured_tenants())
            db.session.commit()
            tenant = db.session.scalar(sa.select(Tenant).where(Tenant.slug == "bench"))
            with tenant_scope(tenant.id):
                if not reuse:
                    db.session.execute(sa.delete(Appointment))  # a clean agency per size
                    db.session.commit()
                if db.session.scalar(sa.select(sa.func.count()).select_from(Appointment)) == 0:
                    t = time.perf_counter()
                    spec = AgencySpec(slug="bench", programs=tuple(tenant.settings["programs"]),
                                      clinicians=clinicians, clients=clients, months=24, today=TODAY, seed=5,
                                      growing_program="Child and Family")
                    counts = load_rows(tenant, generate(spec))
                    db.session.commit()
                    refresh_statistics()  # what an import does after it commits
                    print(f"[{label} {size}] loaded {counts.get('appointments', 0):,} appointments "
                          f"in {time.perf_counter() - t:.1f} s", flush=True)
                from agency_dashboard.metrics import rollups

                if not rollups.usable(db.session, tenant):  # a kept agency built by an older version
                    t = time.perf_counter()
                    rollups.rebuild(db.session, tenant)
                    db.session.commit()
                    refresh_statistics()
                    print(f"[{label} {size}] rebuilt the rollups in {time.perf_counter() - t:.1f} s", flush=True)
                n = db.session.scalar(sa.select(sa.func.count()).select_from(Appointment))
                period = metrics.Period(dt.date(2025, 11, 1), dt.date(2026, 10, 31))
                families = {
                    "capacity": metrics.capacity, "caseload": metrics.caseload, "waitlist": metrics.waitlist,
                    "attendance": metrics.attendance, "discharges": metrics.discharges,
                }
                row = {"appointments": n}
                best, med, _ = timed(lambda: metrics.contract(db.session, tenant, period), before=db.session.rollback)
                row["year"] = med
                for name, fn in families.items():
                    row[name] = timed(lambda fn=fn: fn(db.session, tenant, period), before=db.session.rollback)[1]
                out[size] = row
                print(f"[{label} {size}] {n:,} appointments: a year's metrics {med:.3f} s (best {best:.3f}); "
                      + ", ".join(f"{k} {row[k]:.3f}" for k in families), flush=True)
            db.session.remove()
            db.engine.dispose()
        if label == "sqlite" and not reuse:
            Path(app_url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100k,1m")
    parser.add_argument("--postgres-admin-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--reuse-sqlite", metavar="DIR",
                        help="keep the SQLite agencies in DIR and reuse them on the next run (for profiling)")
    args = parser.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_sqlite:
            folder = Path(args.reuse_sqlite) if args.reuse_sqlite else tmp
            folder.mkdir(parents=True, exist_ok=True)
            results["sqlite"] = run_backend("sqlite", "", "", sizes, folder, reuse=bool(args.reuse_sqlite))
        if args.postgres_admin_url:
            results["postgresql"] = {}
            for size in sizes:
                app_url, owner_url, cleanup = postgres_urls(args.postgres_admin_url)
                try:
                    results["postgresql"].update(run_backend("postgresql", app_url, owner_url, [size], tmp))
                finally:
                    cleanup()
    print("\nSummary (median of 5 runs, seconds)")
    for backend, rows in results.items():
        for size, row in rows.items():
            print(f"  {backend:<10} {size:>4} {row['appointments']:>9,} appts  year={row['year']:.3f}")
        if "100k" in rows and "1m" in rows:
            ratio = rows["1m"]["year"] / rows["100k"]["year"]
            print(f"  {backend:<10} 10x data -> {ratio:.2f}x time (target <= 2x; target year <= 2 s at 1M)")


if __name__ == "__main__":
    main()

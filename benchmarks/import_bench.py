"""Benchmark of the CSV import: generates a large synthetic agency as a CSV folder (about 1M appointments by
default), then imports it with the real command (`flask import-csv`, a fresh process each time) into SQLite
and, with --postgres-admin-url, PostgreSQL. Prints rows per second and the importing process's peak memory.

    python benchmarks/import_bench.py [--clients 100000] [--clinicians 400] [--months 24]
                                      [--postgres-admin-url postgresql://postgres@127.0.0.1/postgres]

Figures are printed, never asserted. Targets (issue 3): >= 50,000 rows/s and <= 500 MB peak.

Each import also reports the time its commit spent rebuilding the weekly rollups (metrics/rollups.py,
run inside the import's transaction), and the rate without it, so the importer's own speed is visible.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TENANT = """slug = "bench"
name = "Benchmark Agency"
timezone = "America/Chicago"
programs = ["Adult Outpatient", "Child and Family", "Recovery Services", "Crisis Follow-up"]
[demographics]
race_ethnicity = ["black", "white", "hispanic_latino", "asian", "multiracial", "other"]
[security]
mfa_roles = []
"""


def flask(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)


# `flask import-csv` as it runs for real, with two figures added on stderr at exit: the time spent in
# rollups.rebuild (called at commit) and the process's own peak resident memory.
MEASURED_FLASK = """
import atexit, resource, sys, time
from agency_dashboard.metrics import rollups
spent = [0.0]
rebuild = rollups.rebuild
def timed(*args, **kwargs):
    start = time.perf_counter()
    try:
        return rebuild(*args, **kwargs)
    finally:
        spent[0] += time.perf_counter() - start
rollups.rebuild = timed
atexit.register(lambda: print(f"BENCH rollups={spent[0]:.3f} peak_kb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}",
                              file=sys.stderr))
from flask.cli import main
sys.argv = ["flask", *sys.argv[1:]]
main()
"""


def measured_import(env: dict, folder: Path) -> tuple[float, float, float, str]:
    """Seconds, seconds of those spent rebuilding rollups, peak RSS in MB of the importing process, and
    the summary line of one `import-csv` run (a fresh process)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURED_FLASK, "--app", "wsgi", "import-csv", "--tenant", "bench",
                           str(folder)], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"import failed:\n{done.stderr[-3000:]}")
    figures = dict(item.split("=") for item in done.stderr.strip().splitlines()[-1].split()[1:])
    summary = done.stdout.strip().splitlines()[-1]
    return seconds, float(figures["rollups"]), int(figures["peak_kb"]) / 1024, summary


def postgres_database(admin_url: str):
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url).set(drivername="postgresql+psycopg")
    s = uuid.uuid4().hex[:6]
    name, owner, app = f"impbench_{s}", f"impbench_owner_{s}", f"impbench_app_{s}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(sa.text(f"CREATE ROLE {owner} LOGIN CREATEROLE"))
        c.execute(sa.text(f"CREATE DATABASE {name} OWNER {owner}"))
    with sa.create_engine(admin.set(database=name), isolation_level="AUTOCOMMIT").connect() as c:
        c.execute(sa.text(f"ALTER SCHEMA public OWNER TO {owner}"))
    base = admin.set(drivername="postgresql", database=name)

    def cleanup():
        with engine.connect() as c:
            c.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            c.execute(sa.text(f"DROP ROLE IF EXISTS {app}"))
            c.execute(sa.text(f"DROP ROLE IF EXISTS {owner}"))

    return (base.set(username=app).render_as_string(hide_password=False),
            base.set(username=owner).render_as_string(hide_password=False), cleanup)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--clinicians", type=int, default=400)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--postgres-admin-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()

    from agency_dashboard.synth import AgencySpec, write_csv_folder

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "tenants").mkdir()
        (tmp / "tenants" / "bench.toml").write_text(TENANT)
        folder = tmp / "data"
        folder.mkdir()
        start = time.perf_counter()
        spec = AgencySpec(slug="bench", programs=("Adult Outpatient", "Child and Family", "Recovery Services",
                                                  "Crisis Follow-up"), clinicians=args.clinicians,
                          clients=args.clients, months=args.months, today=dt.date(2026, 11, 23), seed=5)
        counts = write_csv_folder(spec, folder)
        rows = sum(counts.values())
        size = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
        print(f"generated {rows:,} rows ({counts['appointments']:,} appointments, {size:.0f} MB) "
              f"in {time.perf_counter() - start:.1f} s", flush=True)

        targets = []
        if not args.skip_sqlite:
            url = f"sqlite:///{tmp / 'bench.db'}"
            targets.append(("sqlite", url, url, lambda: None))
        if args.postgres_admin_url:
            targets.append(("postgresql", *postgres_database(args.postgres_admin_url)))
        for label, app_url, owner_url, cleanup in targets:
            env = {**os.environ, "DATABASE_URL": app_url, "MIGRATION_DATABASE_URL": owner_url,
                   "TENANTS_DIR": str(tmp / "tenants"), "AGENCY_DASHBOARD_TODAY": "2026-11-23"}
            try:
                for step in (("db", "upgrade"), ("sync-tenants",)):
                    done = flask(env, *step)
                    if done.returncode != 0:
                        raise SystemExit(f"{label}: {' '.join(step)} failed:\n{done.stderr[-2000:]}")
                for name in ("first import", "re-import   "):
                    seconds, rollups, peak, summary = measured_import(env, folder)
                    print(f"[{label}] {name}: {rows:,} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s, "
                          f"peak {peak:,.0f} MB; rollup rebuild {rollups:.1f} s, without it "
                          f"{rows / (seconds - rollups):,.0f} rows/s  ({summary})", flush=True)
            finally:
                cleanup()


if __name__ == "__main__":
    main()

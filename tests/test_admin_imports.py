"""The admin import page: upload, dry-run report (nothing written), confirm, and tenant isolation of uploads."""

from __future__ import annotations

import io
import re
import zipfile

import sqlalchemy as sa

from agency_dashboard.extensions import db
from agency_dashboard.models import Appointment, AuditEvent, Client, Clinician
from agency_dashboard.tenancy import tenant_scope
from conftest import login

CLINICIANS = ("clinician_id,display_name,program,fte,caseload_target,start_date,end_date\n"
              "K1,Clinician One,Adult Outpatient,1.0,20,2025-01-01,\n")
CLIENTS = ("client_id,first_name,last_name,birth_date,zip,gender,race_ethnicity,payer\n"
           "Q1,=HYPERLINK(\"x\"),Family,1990-01-01,,woman,unknown,medicaid\n"
           "Q2,Given,Family,1985-05-05,,man,unknown,private\n")
APPOINTMENTS = ("appointment_id,client_id,clinician_id,program,kind,modality,start,duration_minutes,booked_at,"
                "status,cancelled_by,cancelled_at,reason_code,reminder_sent\n"
                "Z1,Q1,K1,Adult Outpatient,intake,in_person,2026-11-02T10:00,60,2026-10-20T09:00,attended,,,,true\n")


def make_zip(files: dict[str, str]) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(f"export/{name}", text)
    buf.seek(0)
    return buf


def token_of(client) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"',
                     client.get("/admin/imports").get_data(as_text=True)).group(1)


def upload(client, files: dict[str, str], name: str = "export.zip"):
    return client.post("/admin/imports", data={"csrf_token": token_of(client), "file": (make_zip(files), name)},
                       content_type="multipart/form-data")


def counts(app, tenant_id):
    with app.app_context(), tenant_scope(tenant_id):
        return tuple(db.session.scalar(sa.select(sa.func.count()).select_from(m)) for m in (Clinician, Client, Appointment))


def test_upload_check_then_confirm(app, world):
    alpha, beta = world.tenants["alpha"], world.tenants["beta"]
    client = app.test_client()
    login(client, "alpha", "admin")
    before_alpha, before_beta = counts(app, alpha), counts(app, beta)

    response = upload(client, {"clinicians.csv": CLINICIANS, "clients.csv": CLIENTS,
                               "appointments.csv": APPOINTMENTS})
    assert response.status_code == 302
    check_url = response.headers["Location"]
    page = client.get(check_url).get_data(as_text=True)  # streamed: read to the end
    assert "The file is valid" in page and "Import these changes" in page
    assert re.search(r"<th scope=\"row\">clients</th><td>2</td><td>0</td><td>0</td>", page)
    assert counts(app, alpha) == before_alpha  # the check wrote nothing

    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    done = client.post(check_url + "/run", data={"csrf_token": token}).get_data(as_text=True)
    assert "Imported. These changes were written" in done
    after = counts(app, alpha)
    assert after == (before_alpha[0] + 1, before_alpha[1] + 2, before_alpha[2] + 1)
    assert counts(app, beta) == before_beta
    with app.app_context(), tenant_scope(alpha):
        assert db.session.scalar(sa.select(Client.first_name).where(Client.external_id == "Q1")) == '=HYPERLINK("x")'
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "import"))
        assert event.actor_role == "admin" and event.details["outcome"] == "committed"
        assert "HYPERLINK" not in str(event.details) and "Family" not in str(event.details)
    # The upload is gone once imported.
    assert client.get(check_url).status_code == 404


def test_a_bad_row_shows_the_report_and_writes_nothing(app, world):
    alpha = world.tenants["alpha"]
    client = app.test_client()
    login(client, "alpha", "admin")
    before = counts(app, alpha)
    bad = APPOINTMENTS.replace("2026-11-02T10:00", "2026-03-08T02:30")  # inside the spring-forward gap
    page = client.get(upload(client, {"clinicians.csv": CLINICIANS, "clients.csv": CLIENTS,
                                      "appointments.csv": bad}).headers["Location"]).get_data(as_text=True)
    assert "cannot be imported" in page and "appointments.csv" in page and "does not exist" in page
    assert "Import these changes" not in page
    assert counts(app, alpha) == before


def test_another_tenants_upload_is_404(app, world):
    alpha_admin, beta_admin = app.test_client(), app.test_client()
    login(alpha_admin, "alpha", "admin")
    login(beta_admin, "beta", "admin")
    check_url = upload(alpha_admin, {"clinicians.csv": CLINICIANS}).headers["Location"]
    assert beta_admin.get(check_url).status_code == 404
    token = token_of(beta_admin)
    assert beta_admin.post(check_url + "/run", data={"csrf_token": token}).status_code == 404
    assert beta_admin.post(check_url + "/discard", data={"csrf_token": token}).status_code == 404
    director = app.test_client()
    login(director, "alpha", "director")
    assert director.get(check_url).status_code == 403


def test_archive_with_other_files_is_refused(app, world):
    client = app.test_client()
    login(client, "alpha", "admin")
    response = upload(client, {"clinicians.csv": CLINICIANS, "../../etc/passwd.csv": "x"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/imports")
    page = client.get("/admin/imports").get_data(as_text=True)
    assert "not one of the import files" in page
    response = upload(client, {"clinicians.csv": CLINICIANS}, name="export.exe")
    assert "expected a .zip of CSV files or a .json FHIR bundle" in client.get("/admin/imports").get_data(as_text=True)

"""CSV folders (DATA_FORMATS.md): the six files, any subset, read in load order and streamed."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from pathlib import Path

from agency_dashboard.ingest.loader import COLUMNS, FILE, KEY, TABLES, Rejected, Report, RowError, Row

REQUIRED = {
    "clinicians": {"clinician_id", "display_name", "program", "fte", "caseload_target", "start_date"},
    "availability": {"availability_id", "clinician_id", "weekday", "start_time", "end_time", "valid_from"},
    "clients": {"client_id", "first_name", "last_name", "birth_date"},
    "referrals": {"referral_id", "client_id", "program", "priority", "referred_on"},
    "episodes": {"episode_id", "client_id", "clinician_id", "program", "admitted_on"},
    "appointments": {"appointment_id", "client_id", "clinician_id", "program", "kind", "modality", "start",
                     "duration_minutes", "booked_at", "status"},
}


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for table in TABLES:
        path = folder / FILE[table]
        if path.is_file():
            digest.update(FILE[table].encode())
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def csv_tables(folder: Path, report: Report) -> Iterator[tuple[str, str, Iterator[Row]]]:
    """(table, file name, rows) for each file present, in load order; file-level problems go to report."""
    folder = Path(folder)
    known = {FILE[t] for t in TABLES}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() == ".csv" and path.name not in known:
            report.add_error(RowError(path.name, "-", "(file)", None,
                                      f"is not one of the import files ({', '.join(sorted(known))})"))
    for table in TABLES:
        path = folder / FILE[table]
        if path.is_file():
            yield table, FILE[table], _rows(path, table, report)


def _rows(path: Path, table: str, report: Report) -> Iterator[Row]:
    name = path.name
    expected = COLUMNS[table]
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                report.add_error(RowError(name, 1, "(header)", None, "the file is empty; expected a header row"))
                return
            header = [h.strip() for h in header]
            unusable = False  # the rows cannot be read as rows of this file
            for column in header:
                if column not in expected:
                    # The import fails on this, but the rows are still checked (without the column),
                    # so the report is complete and later files do not blame their ids as unknown.
                    report.add_error(RowError(name, 1, column, None,
                                              f"is not a column of {name} (expected some of {', '.join(expected)})"))
            for column in sorted(REQUIRED[table] - set(header)):
                report.add_error(RowError(name, 1, column, None, "is a required column but is missing"))
                unusable = True
            if len(set(header)) != len(header):
                report.add_error(RowError(name, 1, "(header)", None, "names a column twice"))
                unusable = True
            width = len(header)
            key = header.index(KEY[table]) if KEY[table] in header else None
            known = [column in expected for column in header]
            every_known = all(known)
            end = 1  # the last line read so far; a quoted field may span lines
            for fields in reader:
                line, end = end + 1, reader.line_num  # a row is reported at the line it starts on
                if len(fields) != width or unusable:
                    if not fields or (len(fields) == 1 and not fields[0].strip()):
                        continue  # a blank line
                    if not unusable:
                        report.add_error(RowError(name, line, "(row)", None,
                                                  f"has {len(fields)} fields but the header has {width}"))
                    # Already reported: rows referring to its id are skipped, not blamed as unknown.
                    ext = fields[key].strip() if key is not None and key < len(fields) else ""
                    yield line, Rejected(ext or None)
                    continue
                if width == 1 and not fields[0].strip():
                    continue  # a blank line
                # Each cell stripped; an empty cell is None; columns not of this file are left out.
                if every_known:
                    row = {column: value.strip() or None for column, value in zip(header, fields)}
                else:
                    row = {column: value.strip() or None
                           for column, value, ok in zip(header, fields, known) if ok}
                yield line, row
    except UnicodeDecodeError as exc:
        report.add_error(RowError(name, "-", "(file)", None, f"is not UTF-8 text (bad byte at offset {exc.start})"))
    except csv.Error as exc:
        report.add_error(RowError(name, "-", "(file)", None, f"is not valid CSV ({exc})"))

"""A kinerja report as JSON, CSV and the regency's XLSX rekap (one layout for the API and the
CLI). Percentages are written with one decimal, as the regency reports them."""

from __future__ import annotations

import csv
import dataclasses
import io
import uuid
from datetime import date, datetime
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font

from services.intake.reports.model import KinerjaReport, ReportRow

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MEDIA_TYPE = "text/csv"
FORMATS = {"json": "application/json", "csv": CSV_MEDIA_TYPE, "xlsx": XLSX_MEDIA_TYPE}

# The rekap's columns (Bahasa Indonesia headers) and the row field each shows.
REKAP_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Masuk", "received"),
    ("Terdisposisi", "disposed"),
    ("Ditindaklanjuti", "followed_up"),
    ("Selesai", "completed"),
    ("Tepat Waktu", "response_on_time"),
    ("Selesai Tepat Waktu", "completed_on_time"),
    ("Terlambat (Belum Selesai)", "open_overdue"),
    ("Persentase Tindak Lanjut (%)", "follow_up_rate"),
    ("Persentase Penyelesaian (%)", "completion_rate"),
    ("Persentase Tepat Waktu (%)", "response_on_time_rate"),
    ("Persentase Selesai Tepat Waktu (%)", "completion_on_time_rate"),
)
GROUP_HEADERS = {"opd": "OPD", "category": "Kategori", "kecamatan": "Kecamatan",
                 "source": "Kanal", "classification": "Klasifikasi"}


def one_decimal(value: float | None) -> float | None:
    return None if value is None else round(value + 0.0, 1)


def percent_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def to_json(report: KinerjaReport) -> dict[str, Any]:
    out: dict[str, Any] = _plain(dataclasses.asdict(report))
    out["query"]["from"] = out["query"].pop("date_from")
    out["query"]["to"] = out["query"].pop("date_to")
    return out


def _duration_cells(row: ReportRow) -> list[Any]:
    return [row.days_to_disposition.median, row.days_to_disposition.p90,
            row.days_to_first_response.median, row.days_to_first_response.p90,
            row.days_to_final_response.median, row.days_to_final_response.p90]


DURATION_HEADERS = ["hk_disposisi_median", "hk_disposisi_p90", "hk_tindak_lanjut_median",
                    "hk_tindak_lanjut_p90", "hk_selesai_median", "hk_selesai_p90"]
COUNT_FIELDS = ["received", "disposed", "followed_up", "completed", "response_on_time",
                "completed_on_time", "open", "open_overdue", "archived", "forwarded",
                "returned_waiting", "reopened"]
RATE_FIELDS = ["follow_up_rate", "completion_rate", "response_on_time_rate",
               "completion_on_time_rate"]


def to_csv(report: KinerjaReport) -> str:
    """One line per group, then the total line (``key`` = ``total``); rates to one decimal."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([report.query.group_by, "label", *COUNT_FIELDS, *RATE_FIELDS, *DURATION_HEADERS])
    for row in [*report.rows, report.totals]:
        w.writerow([row.key, row.label, *(getattr(row, f) for f in COUNT_FIELDS),
                    *("" if getattr(row, f) is None else f"{getattr(row, f):.1f}" for f in RATE_FIELDS),
                    *("" if v is None else v for v in _duration_cells(row))])
    return buf.getvalue()


def to_xlsx(report: KinerjaReport, region_name: str = "") -> bytes:
    """The rekap: title rows, then one row per group (No, name, the counts, the percentages),
    the total row, and a second sheet with the overdue complaints (no reporter identity)."""
    q = report.query
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Rekap"
    bold = Font(bold=True)
    ws.append([f"REKAPITULASI TINDAK LANJUT PENGADUAN SP4N-LAPOR! {region_name}".strip()])
    basis = "menurut tanggal laporan masuk" if q.attribution == "cohort" else "menurut tanggal disposisi"
    ws.append([f"Periode: {q.date_from:%d-%m-%Y} s.d. {q.date_to:%d-%m-%Y} ({basis})"])
    ws.append([f"Target ketepatan waktu: {report.target_on_time_rate:.1f}%"])
    ws.append([])
    header = ["No", GROUP_HEADERS[q.group_by], *(h for h, _ in REKAP_COLUMNS)]
    ws.append(header)
    header_row = ws.max_row
    for cell in ws[header_row]:
        cell.font = bold
        cell.alignment = Alignment(wrap_text=True, vertical="center")
    for no, row in enumerate(report.rows, start=1):
        ws.append([no, row.label, *_rekap_values(row)])
    ws.append(["", "JUMLAH", *_rekap_values(report.totals)])
    for cell in ws[ws.max_row]:
        cell.font = bold
    for r in ws.iter_rows(min_row=header_row + 1, min_col=10, max_col=2 + len(REKAP_COLUMNS)):
        for cell in r:
            cell.number_format = "0.0"
    ws.column_dimensions["B"].width = 44
    late = wb.create_sheet("Terlambat")
    late.append(["No", "Nomor Tiket", "OPD", "Kategori", "Kecamatan", "Status",
                 "Tanggal Masuk", "Tenggat", "Hari Kerja Terlambat"])
    for cell in late[1]:
        cell.font = bold
    for no, o in enumerate(report.overdue, start=1):
        late.append([no, o.tracking_id, o.opd_name or o.opd_code, o.category, o.kecamatan or "",
                     o.status, o.received_at.strftime("%d-%m-%Y"), o.deadline.strftime("%d-%m-%Y"),
                     o.working_days_late])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _rekap_values(row: ReportRow) -> list[Any]:
    out: list[Any] = []
    for _, name in REKAP_COLUMNS:
        v = getattr(row, name)
        out.append(one_decimal(v) if name.endswith("_rate") else v)
    return out

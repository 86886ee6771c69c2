"""The LAPOR! export reader and mapper (pure), and the submitter against a fake intake."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import openpyxl
import pytest

from services.cli import main
from services.importer.command import EXIT_FAILED, EXIT_OK, EXIT_REJECTED, EXIT_UNREADABLE, import_lapor
from services.importer.lapor import (
    CellError,
    ExportUnreadable,
    category_code,
    classification_of,
    find_header,
    parse_date,
    parse_time,
    privacy_of,
    read_export,
    received_at,
)
from services.importer.submit import Job, RetryPolicy, submit_all

TZ = ZoneInfo("Asia/Pontianak")
WIB = timezone(timedelta(hours=7))
HEADER = ["Tracking ID", "Tanggal Laporan Masuk", "Waktu Laporan Masuk", "Klasifikasi Laporan",
          "Kategori", "Judul Laporan", "Isi Laporan Awal", "Tipe Laporan", "Sumber Laporan",
          "Instansi Terdisposisi", "Status Laporan", "Kecamatan", "Kelurahan"]
LONG_TEXT = "Air PDAM keruh dan berbau sejak dua minggu. " * 120  # > 4000 characters


def sample_rows(prefix: str) -> list[list]:
    """Six LAPOR! rows in the shapes exports really have: Excel dates and times, serials,
    text dates; one too short to be a complaint, one Anonim+Rahasia, one backdated to
    2026-03-17 09:15 (text), one longer than intake accepts."""
    return [
        [f"{prefix}-1", datetime(2026, 3, 20), time(10, 0), "Pengaduan", "Infrastruktur Jalan",
         "Jalan berlubang di Sungai Ayak", "Jalan desa rusak parah dan berlubang sejak bulan lalu.",
         "Biasa", "Website", "Dinas PUPR", "Selesai", "Belitang Hilir", "Sungai Ayak"],
        [f"{prefix}-2", "17/03/2026", "09:15", "Aspirasi", "Pelayanan Kecamatan",
         "Usulan layanan keliling", "Mohon kantor kecamatan mengadakan layanan keliling ke desa.",
         None, "Android", "Kecamatan Nanga Mahap", "Terdisposisi", "Nanga Mahap", "Nanga Mahap"],
        [f"{prefix}-3", "2026-03-18", "14:30:00", "Permintaan Informasi",
         "Administrasi Kependudukan", "Syarat KTP elektronik",
         "Saya ingin menanyakan syarat pembuatan KTP elektronik pertama.", "Anonim, Rahasia",
         "SMS 1708", "Dinas Kependudukan dan Pencatatan Sipil", "Diverifikasi", "Sekadau Hilir",
         "Mungguk"],
        [f"{prefix}-4", datetime(2026, 3, 19), time(8, 0), "Pengaduan", "Kesehatan",
         "Puskesmas tutup", "Tutup.", "Biasa", "Website", None, "Diterima", "Nanga Taman",
         "Nanga Taman"],
        [f"{prefix}-5", 46100, 0.375, "  pengaduan ", "Kesehatan", "Obat puskesmas habis",
         "Obat di puskesmas sering habis sehingga warga harus membeli sendiri.", "Anonim",
         "Website", "Dinas Kesehatan", "Terdisposisi", "Nanga Taman", "Nanga Taman"],
        [f"{prefix}-6", "19/03/2026", "11.05", "Pengaduan", "Air Minum", "Air PDAM keruh",
         LONG_TEXT, "Rahasia", "Website", "Perumda Air Minum Sekadau", "Ditindaklanjuti",
         "Sekadau Hilir", "Sungai Ringin"],
    ]


def build_export(path: Path, rows: list[list], header: list[str] = HEADER) -> Path:
    """A workbook laid out like LAPOR!'s export: two title rows, a blank row, the header."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Laporan"
    ws.append(["Rekap Laporan SP4N-LAPOR! — Kategori: semua"])
    ws.append(["Instansi: Pemerintah Kabupaten Sekadau", None, "Periode: Maret 2026"])
    ws.append([])
    ws.append(header)
    for row in rows:
        ws.append(row)
    ws.append([])  # trailing blank rows are common
    wb.save(path)
    return path


# --- header -----------------------------------------------------------------------------


def test_header_is_found_below_title_rows_whatever_the_case_spacing_and_order():
    rows = [("Rekap Laporan", None), ("Kategori: semua",), (), (None,),
            ("  KATEGORI ", "tracking   id", "Judul\nLaporan", "Isi Laporan Awal:", "Tipe Laporan",
             "Tanggal Laporan Masuk", "Klasifikasi Laporan", "Kolom Lain")]
    header = find_header(rows)
    assert header is not None and header.row_number == 5
    assert header.columns["category"] == 0 and header.columns["tracking_id"] == 1
    assert header.columns["title"] == 2 and header.columns["description"] == 3
    assert header.missing == ()
    assert not header.has_reporter_columns


def test_no_header_without_tracking_id():
    assert find_header([("Kategori", "Judul Laporan", "Isi Laporan Awal")]) is None


def test_missing_required_columns_are_all_named(tmp_path):
    header = [h for h in HEADER if h not in ("Klasifikasi Laporan", "Tipe Laporan")]
    path = build_export(tmp_path / "x.xlsx", [], header)
    with pytest.raises(ExportUnreadable) as err:
        read_export(path, TZ)
    assert "baris judul kolom 4" in str(err.value)
    assert "Klasifikasi Laporan, Tipe Laporan" in str(err.value)


def test_unreadable_files(tmp_path):
    not_excel = tmp_path / "laporan.xlsx"
    not_excel.write_text("Tracking ID;Judul\n")
    with pytest.raises(ExportUnreadable, match="bukan Excel"):
        read_export(not_excel, TZ)
    with pytest.raises(ExportUnreadable, match="tidak ditemukan"):
        read_export(tmp_path / "missing.xlsx", TZ)
    wb = openpyxl.Workbook()
    wb.active.append(["Laporan tanpa judul kolom"])
    wb.save(tmp_path / "empty.xlsx")
    with pytest.raises(ExportUnreadable, match="baris judul kolom tidak ditemukan"):
        read_export(tmp_path / "empty.xlsx", TZ)


# --- values -----------------------------------------------------------------------------


@pytest.mark.parametrize("cell, expected", [
    (datetime(2026, 3, 17), datetime(2026, 3, 17)),
    (date(2026, 3, 17), date(2026, 3, 17)),
    (46098, date(2026, 3, 17)),  # an Excel serial in a cell without a date format
    (46098.0, date(2026, 3, 17)),
    (46098.3854166667, datetime(2026, 3, 17, 9, 15)),
    ("17/03/2026", date(2026, 3, 17)),
    ("17-03-2026", date(2026, 3, 17)),
    ("2026-03-17", date(2026, 3, 17)),
    (" 17 Maret 2026 ", date(2026, 3, 17)),
    ("17/03/2026 09:15", datetime(2026, 3, 17, 9, 15)),
    ("2026-03-17T09:15:00+07:00", datetime(2026, 3, 17, 9, 15, tzinfo=WIB)),
])
def test_dates(cell, expected):
    assert parse_date(cell) == expected


@pytest.mark.parametrize("cell", ["03/17/2026", "31/02/2026", "kemarin", "", None, 0.5, "17 Marz 2026"])
def test_dates_that_are_refused_rather_than_guessed(cell):
    with pytest.raises(CellError):
        parse_date(cell)


@pytest.mark.parametrize("cell, expected", [
    (time(9, 15), time(9, 15)),
    (datetime(1899, 12, 30, 9, 15), time(9, 15)),  # time-only cell on Excel's day zero
    (timedelta(hours=9, minutes=15), time(9, 15)),
    (0.3854166667, time(9, 15)),  # a day fraction
    (46098.3854166667, time(9, 15)),
    ("09:15", time(9, 15)), ("9:15", time(9, 15)), ("09.15", time(9, 15)),
    ("09:15:30", time(9, 15, 30)),
])
def test_times(cell, expected):
    assert parse_time(cell)[0] == expected


def test_times_refused_and_zone_suffixes():
    for bad in ("25:00", "9 pagi", "09:75"):
        with pytest.raises(CellError):
            parse_time(bad)
    assert parse_time("10:15 WITA") == (time(10, 15), timezone(timedelta(hours=8)))


def test_received_at_is_local_to_the_regency_unless_stated():
    assert received_at("17/03/2026", "09:15", TZ).isoformat() == "2026-03-17T09:15:00+07:00"
    assert received_at(datetime(2026, 3, 17), time(9, 15), TZ).isoformat() == "2026-03-17T09:15:00+07:00"
    assert received_at(46098, 0.3854166667, TZ).isoformat() == "2026-03-17T09:15:00+07:00"
    assert received_at("17/03/2026", None, TZ).isoformat() == "2026-03-17T00:00:00+07:00"
    assert received_at("17/03/2026 09:15", "", TZ).isoformat() == "2026-03-17T09:15:00+07:00"
    assert received_at("17/03/2026", "10:15 WITA", TZ) == datetime(2026, 3, 17, 9, 15, tzinfo=WIB)


def test_classification_and_privacy_mapping():
    assert classification_of("Pengaduan") == "pengaduan"
    assert classification_of(" ASPIRASI ") == "aspirasi"
    assert classification_of("Permintaan  Informasi") == "permintaan_informasi"
    with pytest.raises(CellError, match="Keluhan"):
        classification_of("Keluhan")
    assert privacy_of("Anonim") == (True, False)
    assert privacy_of("Rahasia") == (False, True)
    assert privacy_of("Anonim, Rahasia") == (True, True)
    assert privacy_of("rahasia dan anonim") == (True, True)
    assert privacy_of("Biasa") == (False, False)
    assert privacy_of(None) == (False, False)
    with pytest.raises(CellError):
        privacy_of("Rahasai")  # a typo must never make a Rahasia report public


def test_category_codes():
    assert category_code("Pendidikan dan Kebudayaan") == "pendidikan_dan_kebudayaan"
    assert category_code("  Infrastruktur / Jalan & Jembatan ") == "infrastruktur_jalan_jembatan"
    assert category_code("Kesehatan") == "kesehatan"
    assert category_code("") == "lainnya"


# --- rows → submissions -----------------------------------------------------------------


def test_rows_become_intake_submissions(tmp_path):
    export = read_export(build_export(tmp_path / "lapor.xlsx", sample_rows("LPR")), TZ)
    assert export.sheet == "Laporan" and export.header.row_number == 4
    rows = {r.tracking_id: r for r in export.rows}
    assert [r.row_number for r in export.rows] == [5, 6, 7, 8, 9, 10]

    first = dict(rows["LPR-1"].submission)
    # Selesai in LAPOR!: imported as history (the export has no step dates: all on receipt)
    at = "2026-03-20T10:00:00+07:00"
    assert first.pop("history") == {
        "state": "SELESAI", "historical": True, "verified_at": at, "disposed_at": at,
        "responded_at": at, "closed_at": at, "opd_code": "dpupr", "closed_by": "admin_koordinator",
        "lapor": {"status": "Selesai", "category_label": "Infrastruktur Jalan", "instansi": "Dinas PUPR"}}
    assert first == {
        "source": "lapor", "external_id": "LPR-1", "received_at": "2026-03-20T10:00:00+07:00",
        "classification": "pengaduan", "category": "infrastruktur_jalan",
        "title": "Jalan berlubang di Sungai Ayak",
        "description": "Jalan desa rusak parah dan berlubang sejak bulan lalu.",
        "location": {"kecamatan": "Belitang Hilir", "desa": "Sungai Ayak"},
        "anonymous": True, "confidential": False,
    }
    assert rows["LPR-1"].anonymous_by_default  # Biasa, but the export has no contact
    assert (rows["LPR-1"].status, rows["LPR-1"].disposed_to, rows["LPR-1"].channel) == (
        "Selesai", "Dinas PUPR", "Website")
    assert rows["LPR-2"].submission["received_at"] == "2026-03-17T09:15:00+07:00"
    assert rows["LPR-2"].submission["classification"] == "aspirasi"
    secret = rows["LPR-3"].submission
    assert secret["anonymous"] and secret["confidential"]
    assert not rows["LPR-3"].anonymous_by_default
    assert secret["classification"] == "permintaan_informasi"
    assert rows["LPR-5"].submission["received_at"] == "2026-03-19T09:00:00+07:00"
    long = rows["LPR-6"].submission
    assert len(long["description"]) == 4000 and long["description"].endswith("…")
    assert long["received_at"] == "2026-03-19T11:05:00+07:00"
    assert rows["LPR-6"].notes == (f"Isi Laporan Awal dipotong dari {len(LONG_TEXT.strip())} menjadi "
                                   f"4000 karakter",)
    # intake judges the body: the short one is mapped and will be rejected there
    assert rows["LPR-4"].submission["description"] == "Tutup."


def test_rows_that_cannot_be_mapped_say_why_and_repeated_rows_are_sent_once(tmp_path):
    rows = sample_rows("LPR")[:2]
    rows.append(list(rows[0][:9]) + ["Dinas Perhubungan"] + rows[0][10:])  # second disposition
    rows.append(["LPR-2", "17/03/2026", "09:15", "Aspirasi", "Lain", "Judul lain",
                 "Isi yang lain sama sekali.", None, None, None, None, None, None])
    rows.append([None, "kemarin", None, "Keluhan", "x", "x", "x", "Rahasai", None, None, None, None, None])
    export = read_export(build_export(tmp_path / "lapor.xlsx", rows), TZ)
    third, fourth, fifth = export.rows[2:]
    assert third.duplicate_of == 5
    # sent once, with the first disposition (sp4n disposes to one OPD at a time)
    assert {**third.submission, "history": None} == {**export.rows[0].submission, "history": None}
    assert (third.opd_code, export.rows[0].opd_code) == ("dishub", "dpupr")
    assert fourth.submission is None
    assert fourth.error == "Tracking ID LPR-2 sudah dipakai baris 6 dengan isi berbeda"
    assert fifth.submission is None
    assert fifth.error.startswith("Tracking ID: kosong; Tanggal Laporan Masuk: bukan tanggal")
    assert "Klasifikasi Laporan: nilai 'Keluhan' tidak dikenal" in fifth.error
    assert "Tipe Laporan: nilai 'Rahasai' tidak dikenal" in fifth.error


def test_reporter_columns_are_mapped_when_the_export_has_them(tmp_path):
    header = HEADER + ["Nama Pelapor", "No. HP Pelapor", "Email Pelapor"]
    base = sample_rows("LPR")[0]
    rows = [[*base, "Budi Santoso", "+6281234567890", None],
            ["LPR-9", *base[1:7], "Anonim", *base[8:], "Siti", None, "siti@example.id"],
            ["LPR-10", *base[1:], None, None, None]]
    export = read_export(build_export(tmp_path / "lapor.xlsx", rows, header), TZ)
    named, anonim, unknown = (r.submission for r in export.rows)
    assert named["anonymous"] is False
    assert named["reporter"] == {"name": "Budi Santoso", "phone": "+6281234567890"}
    assert anonim["anonymous"] is True and anonim["reporter"]["email"] == "siti@example.id"
    assert unknown["anonymous"] is True and "reporter" not in unknown


# --- submitting (fake intake) -----------------------------------------------------------


class FakeIntake:
    """Answers like intake: 202 first, 200 on a retry, 422 for a short description; can
    drop connections or answer 503 a given number of times per external id."""

    def __init__(self, connect_errors: int = 0, unavailable: int = 0, status: int | None = None):
        self.accepted: dict[str, dict] = {}
        self.calls: dict[str, int] = {}
        self.connect_errors, self.unavailable, self.status = connect_errors, unavailable, status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        ext = body["external_id"]
        n = self.calls[ext] = self.calls.get(ext, 0) + 1
        if n <= self.connect_errors:
            raise httpx.ConnectError("connection refused", request=request)
        if n <= self.connect_errors + self.unavailable:
            return httpx.Response(503, json={"detail": "database unavailable"})
        if self.status:
            return httpx.Response(self.status, json={"detail": {"message": "nope"}})
        if len(body["description"]) < 10:
            return httpx.Response(422, json={"errors": [{
                "field": "description", "reason": "String should have at least 10 characters"}]})
        code = 200 if ext in self.accepted else 202
        self.accepted.setdefault(ext, body)
        return httpx.Response(code, json={"tracking_id": f"SKD-{ext}"})


async def run_import(path, fake, **kw):
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake), base_url="http://intake")
    async with client:
        return await import_lapor(path, url="http://intake", api_key="k", tz=TZ, client=client,
                                  progress=False, retry=RetryPolicy(3, 0.001, 0.002), **kw)


async def test_transient_failures_are_retried_and_4xx_never(tmp_path):
    path = build_export(tmp_path / "lapor.xlsx", sample_rows("LPR"))
    fake = FakeIntake(connect_errors=1, unavailable=1)
    report = await run_import(path, fake)
    assert (report.imported, report.present) == (5, 0)
    assert [(o.row_number, o.detail) for o in report.rejected] == [
        (8, "description: String should have at least 10 characters")]
    assert fake.calls["LPR-4"] == 3  # two transient failures, then the 422: not retried
    assert all(n == 3 for n in fake.calls.values())
    assert report.exit_code == EXIT_REJECTED
    text = report.render()
    assert "baris 8: description: String should have at least 10 characters" in text
    assert "diimpor (baru, 202)        : 5" in text
    # Status Laporan is mapped now (issue 11): counted per sp4n state, with the period's rates
    assert "1  SELESAI (riwayat)" in text and "2  TERDISPOSISI" in text
    assert "tingkat penyelesaian       :  25.0%  (1 selesai)" in text

    again = await run_import(path, fake)
    assert (again.imported, again.present, len(again.rejected)) == (0, 5, 1)


async def test_retries_are_bounded_and_failures_reported(tmp_path):
    path = build_export(tmp_path / "lapor.xlsx", sample_rows("LPR")[:2])
    report = await run_import(path, FakeIntake(unavailable=99))
    assert [o.kind for o in report.failed] == ["failed", "failed"]
    assert "HTTP 503" in report.failed[0].detail and "3 percobaan" in report.failed[0].detail
    assert report.exit_code == EXIT_FAILED


async def test_a_refused_key_stops_the_run(tmp_path):
    path = build_export(tmp_path / "lapor.xlsx", sample_rows("LPR"))
    fake = FakeIntake(status=401)
    report = await run_import(path, fake, concurrency=2)
    assert report.exit_code == EXIT_UNREADABLE and "HTTP 401" in report.fatal
    assert sum(fake.calls.values()) <= 2  # only the requests already in flight


async def test_clean_import_exits_zero(tmp_path):
    path = build_export(tmp_path / "lapor.xlsx", [r for r in sample_rows("LPR") if r[0] != "LPR-4"])
    report = await run_import(path, FakeIntake())
    assert report.imported == 5 and report.exit_code == EXIT_OK


def test_cli_dry_run_validates_with_intakes_contract(tmp_path, capsys):
    path = build_export(tmp_path / "lapor.xlsx", sample_rows("LPR"))
    assert main(["import-lapor", str(path), "--dry-run"]) == EXIT_REJECTED
    out = capsys.readouterr().out
    assert "valid, siap dikirim        : 5" in out
    assert "baris 8: description: String should have at least 10 characters" in out
    bad = tmp_path / "bad.xlsx"
    build_export(bad, [], HEADER[1:])
    assert main(["import-lapor", str(bad), "--dry-run"]) == EXIT_UNREADABLE
    assert "Tracking ID" in capsys.readouterr().out


async def test_an_unreachable_intake_stops_the_run_instead_of_retrying_every_row(tmp_path):
    rows = [[f"LPR-{n}", *sample_rows("x")[0][1:]] for n in range(30)]
    path = build_export(tmp_path / "lapor.xlsx", rows)
    fake = FakeIntake(connect_errors=99)
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake), base_url="http://intake")
    async with client:
        jobs = [Job(r.row_number, r.tracking_id, r.submission) for r in read_export(path, TZ).rows]
        outcomes = await submit_all(client, jobs, concurrency=2, retry=RetryPolicy(2, 0.001, 0.001),
                                    give_up_after=4)
    assert len(outcomes) == 30 and {o.kind for o in outcomes} == {"failed"}
    assert len(fake.calls) <= 5  # 4 rows failed in a row (+1 in flight), the rest never tried
    assert outcomes[-1].attempts == 0 and outcomes[-1].detail.startswith("tidak dicoba")

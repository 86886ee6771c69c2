"""LAPOR! history in the importer (issue 11 item 6): status strings → states, the editable
Kategori/Instansi tables, dates → the ``history`` intake replays, Nama Pelapor, the rates."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.importer.command import import_rates
from services.importer.lapor import CellError, rating_of, read_export
from services.importer.mapping import MappingUnreadable, load_mappings, read_table, status_of
from services.intake.schemas import ComplaintIn
from tests.unit.test_importer_lapor import HEADER, build_export

TZ = ZoneInfo("Asia/Pontianak")
DATES = ["Tanggal Verifikasi", "Tanggal Disposisi", "Tanggal Tindak Lanjut", "Tanggal Selesai",
         "Rating", "Alasan Arsip", "ID Kategori", "Nama Pelapor"]
FULL = HEADER + DATES


@pytest.mark.parametrize(("text", "state", "by", "historical"), [
    ("Terverifikasi", "TERVERIFIKASI", None, False),
    ("Ditutup oleh Admin", "SELESAI", "admin", True),
    ("DITUTUP OLEH SISTEM", "SELESAI", "system", True),
    ("Selesai", "SELESAI", "admin", True),
    ("Diarsipkan oleh Admin", "DIARSIPKAN", "admin", True),
    ("Diarsipkan oleh Sistem", "DIARSIPKAN", "system", True),
    ("Ditanggapi oleh Pelapor", "DITANGGAPI_PELAPOR", None, False),
    ("Belum Diverifikasi", "DITERIMA", None, False),
    ("Belum Terverifikasi", "DITERIMA", None, False),
    ("Menunggu", "DITERIMA", None, False),
    ("Didisposisikan", "TERDISPOSISI", None, False),
    ("Terdisposisi", "TERDISPOSISI", None, False),
    ("Ditindaklanjuti", "DITINDAKLANJUTI", None, False),
    ("Sedang Ditindaklanjuti", "DITINDAKLANJUTI", None, False),
    ("Dilimpahkan", "DILIMPAHKAN", "admin", True),
    ("Ditunda", "DITUNDA", None, False),
    ("Dikembalikan (bukan wewenang)", "DIKEMBALIKAN", None, False),
    ("  ditutup - admin ", "SELESAI", "admin", True),
])
def test_lapor_status_strings_map_to_states(text, state, by, historical):
    st = status_of(text)
    assert (st.state, st.by, st.historical, st.known) == (state, by, historical, True)


def test_an_unknown_status_is_never_guessed_closed():
    st = status_of("Sedang dipelajari")
    assert (st.state, st.known, st.historical) == ("DITERIMA", False, False)
    assert not status_of("").known


def test_mapping_tables_from_files_win_over_the_seed(tmp_path: Path):
    seed = load_mappings()
    assert seed.category("Pendidikan dan Kebudayaan") == "pendidikan"
    assert seed.opd("DINAS KESEHATAN") == "dinkes"  # the catalogue's name
    assert seed.opd("Dinas Kesehatan Kabupaten Sekadau") == "dinkes"
    assert seed.opd("Dinas PUPR") == "dpupr"  # seed alias
    assert seed.opd("dinkes") == "dinkes"  # a code
    assert seed.opd("Kantor Antah Berantah") is None
    (tmp_path / "kat.csv").write_text("label,code\nJalan Rusak Parah,infrastruktur_jalan\n"
                                      "Pendidikan dan Kebudayaan,lainnya\n")
    (tmp_path / "ins.json").write_text(json.dumps({"_x": "komentar", "Kantor Antah Berantah": "setda"}))
    mine = load_mappings(tmp_path / "kat.csv", tmp_path / "ins.json")
    assert mine.category("jalan rusak  parah!") == "infrastruktur_jalan"
    assert mine.category("Pendidikan dan Kebudayaan") == "lainnya"
    assert mine.opd("Kantor Antah Berantah") == "setda"
    (tmp_path / "bad.json").write_text(json.dumps({"X": "Bukan Kode"}))
    with pytest.raises(MappingUnreadable, match="tidak sah"):
        read_table(tmp_path / "bad.json")
    with pytest.raises(MappingUnreadable):
        read_table(tmp_path / "missing.csv")


def test_ratings():
    assert [rating_of(v) for v in ("4", 5.0, "3/5", "★★", " 1 ")] == [4, 5, 3, 2, 1]
    for bad in ("0", "6", "baik"):
        with pytest.raises(CellError):
            rating_of(bad)


def row(tid: str, status: str, instansi: str | None, *, kategori: str = "Kesehatan",
        dates: tuple = (None, None, None, None), rating=None, alasan=None, nama=None,
        tipe: str = "Biasa", received: datetime = datetime(2026, 3, 2, 8, 0)) -> list:
    return [tid, received, None, "Pengaduan", kategori, "Obat puskesmas habis",
            "Obat di puskesmas sering habis sehingga warga membeli sendiri.", tipe, "Website",
            instansi, status, "Nanga Taman", "Nanga Taman", *dates, rating, alasan, "K-17", nama]


def test_closed_rows_become_history_with_their_dates_and_open_ones_stay_open(tmp_path: Path):
    d = (datetime(2026, 3, 3, 9), datetime(2026, 3, 4, 10), datetime(2026, 3, 9, 11),
         datetime(2026, 3, 12, 12))
    rows = [
        row("A", "Ditutup oleh Admin", "Dinas Kesehatan", dates=d, rating="4"),
        row("B", "Ditutup oleh Sistem", "Dinkes", dates=(None, d[1], d[2], d[3])),
        row("C", "Diarsipkan oleh Sistem", None, dates=(None, None, None, d[0]),
            alasan="Laporan terlalu umum, tidak jelas lokasinya"),
        row("D", "Terdisposisi", "RSUD Sekadau", dates=(d[0], d[1], None, None)),
        row("E", "Ditindaklanjuti", "Kantor Antah Berantah"),
        row("F", "Selesai", None),
        row("G", "Terverifikasi", None, kategori="Kategori Baru Sekali", nama="Budi"),
        row("H", "Ditutup oleh Admin", "dinkes", dates=(None, d[2], d[1], None), nama="Siti", tipe="Anonim"),
    ]
    export = read_export(build_export(tmp_path / "x.xlsx", rows, FULL), TZ)
    by = {r.tracking_id: r for r in export.rows}
    a = by["A"].submission["history"]
    assert a == {"state": "SELESAI", "historical": True, "verified_at": "2026-03-03T09:00:00+07:00",
                 "disposed_at": "2026-03-04T10:00:00+07:00", "responded_at": "2026-03-09T11:00:00+07:00",
                 "closed_at": "2026-03-12T12:00:00+07:00", "opd_code": "dinkes",
                 "closed_by": "admin_koordinator", "rating": 4,
                 "lapor": {"status": "Ditutup oleh Admin", "category_label": "Kesehatan",
                           "category_id": "K-17",
                           "instansi": "Dinas Kesehatan", "rating": "4"}}
    assert by["B"].submission["history"]["closed_by"] == "system"
    # missing Tanggal Verifikasi: taken from the step before (receipt), and said so
    assert by["B"].submission["history"]["verified_at"] == "2026-03-02T08:00:00+07:00"
    assert any("Tanggal Verifikasi" in n for n in by["B"].notes)
    c = by["C"].submission["history"]
    assert (c["state"], c["archive_reason"], c["historical"]) == ("DIARSIPKAN", "terlalu_umum", True)
    assert c["note"].startswith("diarsipkan oleh sistem di SP4N-LAPOR!: Laporan terlalu umum")
    assert c["lapor"]["alasan_arsip"].startswith("Laporan terlalu umum")
    dd = by["D"].submission["history"]
    assert (dd["state"], dd["historical"], dd["opd_code"]) == ("TERDISPOSISI", False, "rsud")
    assert by["E"].submission is None
    assert "'Kantor Antah Berantah' tidak ada di tabel pemetaan" in by["E"].error
    assert by["F"].submission is None and "Instansi Terdisposisi: kosong" in by["F"].error
    g = by["G"]
    assert g.triage and g.submission["category"] == "kategori_baru_sekali"
    assert g.submission["history"]["lapor"]["category_label"] == "Kategori Baru Sekali"
    # Nama Pelapor present: named (LAPOR! keeps the contact), unless Tipe Laporan says Anonim
    assert g.submission["anonymous"] is False and g.submission["reporter"] == {"name": "Budi"}
    assert by["H"].submission["anonymous"] is True
    # a date earlier than the step before it is lifted to that step's date
    h = by["H"].submission["history"]
    assert h["responded_at"] == h["disposed_at"] == "2026-03-09T11:00:00+07:00"
    for r in export.rows:  # every sendable row passes intake's own contract
        if r.submission is not None:
            ComplaintIn.model_validate(r.submission)

    rates = import_rates([by[k] for k in "ABCDGH"], TZ)
    assert rates is not None
    # disposed: A, B, D, H; followed up and completed: A, B, H; on time (≤ 5 HK): A, B, H
    assert (rates.disposed, rates.followed_up, rates.completed, rates.on_time) == (4, 3, 3, 3)

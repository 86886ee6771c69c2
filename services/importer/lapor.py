"""Reading an SP4N-LAPOR! Excel export and mapping its rows to intake submissions.

Pure: no network, no database. ``read_export`` returns every data row either as a
``ComplaintIn``-shaped JSON body or with the reason it cannot be one; intake stays the
judge of the body itself (length limits, future dates, …).

What LAPOR! exports look like, and how they are read:
- title rows and blank rows precede the header row, which is found by its column names
  (case, extra spaces, punctuation and column order do not matter);
- dates come as Excel dates, serial numbers or text (``17/03/2026`` day first, as in
  Indonesia; ``2026-03-17``; ``17 Maret 2026``), times as Excel times, day fractions or
  text (``09:15``, ``09.15``, ``09:15:00``, an optional WIB/WITA/WIT suffix); a local time
  is in the regency's zone, so a backdated row starts its clocks on its original date;
- exports carry no reporter contact: a row is submitted ``anonymous`` unless the export
  has reporter columns with a name and a contact (LAPOR! keeps the identity; intake only
  needs the flag so that it never asks for one);
- Instansi Terdisposisi, Status Laporan and Sumber Laporan have no intake field; they are
  kept on the row for the operator's summary only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, TypeVar

from services.importer.mapping import (
    DISPOSED_STATES,
    HISTORICAL_STATES,
    LaporStatus,
    Mappings,
    load_mappings,
    status_of,
)

T = TypeVar("T")
SOURCE = "lapor"
MAX_DESCRIPTION = 4000  # ComplaintIn.description max_length
MAX_TITLE = 200  # ComplaintIn.title max_length
MAX_CATEGORY = 100
HEADER_SEARCH_ROWS = 50
FALLBACK_CATEGORY = "lainnya"  # seeded without a rule: goes to the admin koordinator's triage


class ExportUnreadable(Exception):
    """The file cannot be imported at all: not a workbook, no header row, missing columns."""


@dataclass(frozen=True)
class Column:
    key: str
    label: str  # as LAPOR! names it; used in messages
    aliases: tuple[str, ...] = ()
    required: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("tracking_id", "Tracking ID", ("id tracking", "nomor tracking", "no tracking"), True),
    Column("date", "Tanggal Laporan Masuk", ("tanggal masuk",), True),
    # Optional: some exports put the time into the date column. Without it a row starts at
    # 00:00 local, which gives the same working-day deadline (it depends on the date only).
    Column("time", "Waktu Laporan Masuk", ("waktu masuk", "jam laporan masuk")),
    Column("classification", "Klasifikasi Laporan", ("klasifikasi",), True),
    Column("category", "Kategori", ("kategori laporan",), True),
    Column("title", "Judul Laporan", ("judul",), True),
    Column("description", "Isi Laporan Awal", ("isi laporan",), True),
    # Required: without it a Rahasia report would be imported as public.
    Column("kind", "Tipe Laporan", (), True),
    Column("channel", "Sumber Laporan"),
    Column("disposed_to", "Instansi Terdisposisi"),
    Column("status", "Status Laporan"),
    Column("kecamatan", "Kecamatan"),
    Column("desa", "Kelurahan", ("desa", "desa kelurahan", "kelurahan desa")),
    Column("reporter_name", "Nama Pelapor"),
    Column("reporter_phone", "Telepon Pelapor",
           ("no telepon pelapor", "nomor telepon pelapor", "no hp pelapor", "nomor hp pelapor",
            "hp pelapor")),
    Column("reporter_email", "Email Pelapor", ("e mail pelapor",)),
    Column("reporter_nik", "NIK Pelapor"),
    # What LAPOR! knows of the row's handling (issue 11): dates, rating, reasons.
    Column("category_id", "ID Kategori", ("id kategori laporan", "kode kategori")),
    Column("verified_date", "Tanggal Verifikasi", ("tanggal diverifikasi", "tanggal terverifikasi",
                                                   "waktu verifikasi")),
    Column("disposed_date", "Tanggal Disposisi", ("tanggal terdisposisi", "tanggal didisposisikan",
                                                  "waktu disposisi")),
    Column("followup_date", "Tanggal Tindak Lanjut", ("tanggal ditindaklanjuti", "tanggal tanggapan",
                                                      "tanggal tindak lanjut pertama",
                                                      "waktu tindak lanjut", "tanggal respon")),
    Column("reply_date", "Tanggal Ditanggapi Pelapor", ("tanggal tanggapan pelapor",)),
    Column("closed_date", "Tanggal Selesai", ("tanggal ditutup", "tanggal penutupan",
                                              "tanggal diarsipkan", "tanggal arsip",
                                              "tanggal dilimpahkan", "tanggal status terakhir",
                                              "waktu selesai")),
    Column("rating", "Rating", ("penilaian", "rating pelapor", "nilai")),
    Column("alasan_tunda", "Alasan Tunda", ("alasan ditunda",)),
    Column("alasan_arsip", "Alasan Arsip", ("alasan diarsipkan", "alasan pengarsipan")),
)
REPORTER_KEYS = ("reporter_name", "reporter_phone", "reporter_email", "reporter_nik")

CLASSIFICATIONS = {
    "pengaduan": "pengaduan",
    "aspirasi": "aspirasi",
    "permintaan informasi": "permintaan_informasi",
}
_KIND_TOKENS = {
    "anonim": "anonymous", "anonym": "anonymous", "anonymous": "anonymous",
    "rahasia": "confidential", "confidential": "confidential",
    "biasa": None, "umum": None, "publik": None, "-": None,
}
_ZONE_SUFFIX = {"wib": timezone(timedelta(hours=7)), "wita": timezone(timedelta(hours=8)),
                "wit": timezone(timedelta(hours=9))}
_MONTHS = {
    "januari": 1, "jan": 1, "februari": 2, "feb": 2, "pebruari": 2, "maret": 3, "mar": 3,
    "april": 4, "apr": 4, "mei": 5, "may": 5, "juni": 6, "jun": 6, "juli": 7, "jul": 7,
    "agustus": 8, "agu": 8, "agt": 8, "ags": 8, "aug": 8, "september": 9, "sep": 9, "sept": 9,
    "oktober": 10, "okt": 10, "oct": 10, "november": 11, "nov": 11, "nopember": 11,
    "desember": 12, "des": 12, "dec": 12,
}
_TIME_TEXT = re.compile(r"^(\d{1,2})[:.](\d{2})(?:[:.](\d{2}))?\s*(wib|wita|wit)?$", re.I)
_DATE_DMY = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})$")
_DATE_YMD = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_DATE_WORDS = re.compile(r"^(\d{1,2})\s+([a-z]+)\.?\s+(\d{4})(?:\s+(.+))?$", re.I)
_CLOSED_STATUSES = {"selesai", "diarsipkan", "dilimpahkan", "ditutup", "arsip"}


def normalize_label(text: Any) -> str:
    """'  TANGGAL\\nLaporan  Masuk: ' → 'tanggal laporan masuk'."""
    s = unicodedata.normalize("NFKC", str(text or "")).lower()
    return " ".join(re.sub(r"[^0-9a-z]+", " ", s).split())


_BY_LABEL: dict[str, str] = {}
for _c in COLUMNS:
    for _name in (_c.label, *_c.aliases):
        _BY_LABEL.setdefault(normalize_label(_name), _c.key)
_LABEL_OF = {c.key: c.label for c in COLUMNS}


# --- header -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    row_number: int  # 1-based, as the spreadsheet shows it
    columns: dict[str, int]  # column key → 0-based index in the row
    missing: tuple[str, ...]  # labels of required columns not found

    @property
    def has_reporter_columns(self) -> bool:
        return "reporter_name" in self.columns and any(
            k in self.columns for k in ("reporter_phone", "reporter_email", "reporter_nik"))


def find_header(rows: Iterable[Sequence[Any]], search_rows: int = HEADER_SEARCH_ROWS) -> Header | None:
    """The row naming the most known columns among the first ``search_rows`` rows.

    It must name Tracking ID and at least two other known columns, so a title row that
    happens to contain the word "Kategori" is never taken for the header.
    """
    best: Header | None = None
    best_hits = 0
    for number, row in enumerate(rows, start=1):
        if number > search_rows:
            break
        columns: dict[str, int] = {}
        for index, value in enumerate(row):
            key = _BY_LABEL.get(normalize_label(value))
            if key is not None and key not in columns:
                columns[key] = index
        if "tracking_id" in columns and len(columns) >= 3 and len(columns) > best_hits:
            missing = tuple(c.label for c in COLUMNS if c.required and c.key not in columns)
            best, best_hits = Header(number, columns, missing), len(columns)
    return best


# --- values -----------------------------------------------------------------------------


class CellError(ValueError):
    """One cell's value cannot be understood; the message says why, in the operator's terms."""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # an id typed as a number: 1234567.0 → "1234567"
    return str(value).strip()


def _from_serial(value: float, epoch: datetime) -> datetime:
    from openpyxl.utils.datetime import from_excel

    try:
        moment = from_excel(value, epoch)
    except (ValueError, OverflowError) as exc:
        raise CellError(f"bukan tanggal/jam Excel: {value!r}") from exc
    if not isinstance(moment, datetime):  # from_excel returns a time for values below 1
        moment = datetime.combine(epoch.date(), moment)
    return moment.replace(microsecond=0)


def parse_date(value: Any, epoch: datetime = datetime(1899, 12, 30)) -> datetime | date:
    """A 'Tanggal Laporan Masuk' cell → a date, or a (naive or aware) datetime if it has a time."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 1:
            raise CellError(f"bukan tanggal: {value!r}")
        moment = _from_serial(value, epoch)
        return moment if moment.time() != time(0) else moment.date()
    text = _text(value)
    if not text:
        raise CellError("kosong")
    if m := _DATE_WORDS.match(text):
        month = _MONTHS.get(m[2].lower())
        if month is None:
            raise CellError(f"nama bulan tidak dikenal: {m[2]!r}")
        year, day_of_month, rest = int(m[3]), int(m[1]), m[4] or ""
    else:
        head, _, rest = text.partition(" ")
        if m := _DATE_DMY.match(head):  # day first, as Indonesia writes it
            year, month, day_of_month = int(m[3]), int(m[2]), int(m[1])
        elif m := _DATE_YMD.match(head):
            year, month, day_of_month = int(m[1]), int(m[2]), int(m[3])
        else:
            try:
                return datetime.fromisoformat(text)  # '2026-03-17T09:15:00+07:00' and friends
            except ValueError:
                raise CellError(f"bukan tanggal yang dikenal: {text!r} "
                                f"(contoh: 17/03/2026 atau 2026-03-17)") from None
    try:
        day = date(year, month, day_of_month)
    except ValueError:
        raise CellError(f"tanggal tidak ada: {text!r}") from None
    if not rest.strip():
        return day
    clock, zone = parse_time(rest.strip())
    return datetime.combine(day, clock, tzinfo=zone)


def parse_time(value: Any, epoch: datetime = datetime(1899, 12, 30)) -> tuple[time, tzinfo | None]:
    """A 'Waktu Laporan Masuk' cell → (time of day, the zone its text named, if any)."""
    if isinstance(value, datetime):  # time-only cells sometimes arrive on Excel's day zero
        return value.time().replace(microsecond=0), value.tzinfo
    if isinstance(value, time):
        return value.replace(microsecond=0, tzinfo=None), value.tzinfo
    if isinstance(value, timedelta):
        seconds = round(value.total_seconds())
        if not 0 <= seconds < 86400:
            raise CellError(f"bukan jam dalam sehari: {value}")
        return (datetime.min + timedelta(seconds=seconds)).time(), None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise CellError(f"bukan jam: {value!r}")
        if value >= 1:  # a full serial date-time: keep its time of day
            return _from_serial(value, epoch).time(), None
        seconds = round(value * 86400) % 86400
        return (datetime.min + timedelta(seconds=seconds)).time(), None
    text = _text(value)
    m = _TIME_TEXT.match(text)
    if not m:
        raise CellError(f"bukan jam yang dikenal: {text!r} (contoh: 09:15 atau 09:15:00)")
    hour, minute, second = int(m[1]), int(m[2]), int(m[3] or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise CellError(f"bukan jam yang dikenal: {text!r}")
    return time(hour, minute, second), _ZONE_SUFFIX.get((m[4] or "").lower())


def received_at(date_value: Any, time_value: Any, tz: tzinfo,
                epoch: datetime = datetime(1899, 12, 30)) -> datetime:
    """When the citizen filed the report, aware. A local time is in the regency's zone."""
    when = parse_date(date_value, epoch)
    if _text(time_value):
        clock, zone = parse_time(time_value, epoch)
        day = when.date() if isinstance(when, datetime) else when
        return datetime.combine(day, clock, tzinfo=zone or tz)
    if isinstance(when, datetime):
        return when if when.tzinfo is not None else when.replace(tzinfo=tz)
    return datetime.combine(when, time(0), tzinfo=tz)


def classification_of(value: Any) -> str:
    label = normalize_label(value)
    if label not in CLASSIFICATIONS:
        shown = _text(value) or "(kosong)"
        raise CellError(f"nilai {shown!r} tidak dikenal (Pengaduan, Aspirasi, Permintaan Informasi)")
    return CLASSIFICATIONS[label]


def privacy_of(value: Any) -> tuple[bool, bool]:
    """'Tipe Laporan' → (anonim, rahasia). Unknown words are an error, never guessed: a
    misread 'Rahasia' would publish a report the citizen asked to keep hidden."""
    anonymous = confidential = False
    raw = unicodedata.normalize("NFKC", _text(value)).lower()
    for token in re.split(r"[,;/&+]|\bdan\b", raw):
        word = " ".join(token.split())
        if not word:
            continue
        if word not in _KIND_TOKENS:
            raise CellError(
                f"nilai {_text(value)!r} tidak dikenal (Anonim, Rahasia, 'Anonim, Rahasia', Biasa)")
        flag = _KIND_TOKENS[word]
        anonymous |= flag == "anonymous"
        confidential |= flag == "confidential"
    return anonymous, confidential


def category_code(value: Any) -> str:
    """'Pendidikan dan Kebudayaan' → 'pendidikan_dan_kebudayaan'; empty → 'lainnya' (triage)."""
    ascii_text = unicodedata.normalize("NFKD", _text(value)).encode("ascii", "ignore").decode()
    code = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")[:MAX_CATEGORY].rstrip("_")
    return code or FALLBACK_CATEGORY


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# --- rows -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportRow:
    row_number: int  # as the spreadsheet shows it, for the operator
    tracking_id: str
    submission: dict[str, Any] | None  # a ComplaintIn JSON body, or None with ``error``
    error: str | None = None
    duplicate_of: int | None = None  # an identical earlier row of the same Tracking ID
    status: str | None = None  # Status Laporan: summary only, intake has no such field
    disposed_to: str | None = None  # Instansi Terdisposisi: summary only
    channel: str | None = None  # Sumber Laporan: summary only
    notes: tuple[str, ...] = ()
    anonymous_by_default: bool = False  # not Anonim in LAPOR!, but no reporter contact here
    state: str | None = None  # the sp4n state LAPOR!'s status maps to (None: not mapped)
    historical: bool = False  # closed/archived/forwarded in LAPOR!: imported as history
    opd_code: str | None = None  # Instansi Terdisposisi through the mapping table
    triage: bool = False  # Kategori not in the mapping table: sent with its own text

    @property
    def looks_closed(self) -> bool:
        return self.historical or normalize_label(self.status) in _CLOSED_STATUSES


def map_row(values: Sequence[Any], header: Header, row_number: int, tz: tzinfo,
            epoch: datetime = datetime(1899, 12, 30), mappings: Mappings | None = None) -> ExportRow:
    """One data row → its submission body (with the ``history`` LAPOR! knows), or every
    reason it cannot be one."""
    maps = mappings if mappings is not None else default_mappings()
    def cell(key: str) -> Any:
        index = header.columns.get(key)
        return values[index] if index is not None and index < len(values) else None

    tracking_id = _text(cell("tracking_id"))
    status = _text(cell("status")) or None
    disposed_to = _text(cell("disposed_to")) or None
    channel = _text(cell("channel")) or None
    errors: list[str] = []
    notes: list[str] = []

    def parsed(label_key: str, fn: Callable[..., T], *args: Any) -> T | None:
        try:
            return fn(*args)
        except CellError as exc:
            errors.append(f"{_LABEL_OF[label_key]}: {exc}")
            return None

    if not tracking_id:
        errors.append("Tracking ID: kosong")
    when = parsed("date", received_at, cell("date"), cell("time"), tz, epoch)
    classification = parsed("classification", classification_of, cell("classification"))
    privacy = parsed("kind", privacy_of, cell("kind"))
    lapor_status = status_of(status) if "status" in header.columns else None
    opd_code = maps.opd(disposed_to) if disposed_to else None
    dates: dict[str, datetime | None] = {}
    for key in ("verified_date", "disposed_date", "followup_date", "reply_date", "closed_date"):
        if key in header.columns:  # absent: not a gap to report, the export has no such column
            dates[key] = (parsed(key, received_at, cell(key), None, tz, epoch)
                          if _text(cell(key)) else None)
    rating = parsed("rating", rating_of, cell("rating")) if _text(cell("rating")) else None
    if lapor_status is not None and lapor_status.state in DISPOSED_STATES:
        if not disposed_to:
            errors.append(f"Instansi Terdisposisi: kosong, padahal status {status!r} berarti "
                          f"sudah didisposisikan")
        elif opd_code is None:
            errors.append(f"Instansi Terdisposisi: {disposed_to!r} tidak ada di tabel pemetaan "
                          f"instansi → kode OPD (tambahkan lalu impor ulang: --instansi-map)")
    if errors:
        return ExportRow(row_number, tracking_id, None, "; ".join(errors), status=status,
                         disposed_to=disposed_to, channel=channel)
    # (no errors: every parsed value is there)
    assert when is not None and privacy is not None
    anonymous, confidential = privacy
    title = _text(cell("title"))
    if len(title) > MAX_TITLE:
        notes.append(f"Judul Laporan dipotong dari {len(title)} menjadi {MAX_TITLE} karakter")
        title = _clip(title, MAX_TITLE)
    description = _text(cell("description"))
    if len(description) > MAX_DESCRIPTION:
        notes.append(f"Isi Laporan Awal dipotong dari {len(description)} menjadi {MAX_DESCRIPTION} karakter")
        description = _clip(description, MAX_DESCRIPTION)
    label = _text(cell("category"))
    mapped = maps.category(label) if label else None
    category = mapped or category_code(label)
    triage = bool(label) and mapped is None
    if not label:
        notes.append(f"Kategori kosong: dikirim sebagai '{FALLBACK_CATEGORY}' (triase)")
    elif triage:
        notes.append(f"Kategori {label!r} tidak ada di tabel pemetaan: dikirim sebagai "
                     f"'{category}' (teks aslinya; triase admin koordinator)")

    reporter = {k.removeprefix("reporter_"): _text(cell(k)) for k in REPORTER_KEYS if _text(cell(k))}
    # "Nama Pelapor" present: a named reporter (LAPOR! keeps the contact) unless Anonim.
    identified = bool(reporter.get("name"))
    submission: dict[str, Any] = {
        "source": SOURCE,
        "external_id": tracking_id,
        "received_at": when.isoformat(),
        "classification": classification,
        "category": category,
        "title": title,
        "description": description,
        "location": {"kecamatan": _text(cell("kecamatan")) or None,
                     "desa": _text(cell("desa")) or None},
        # Intake requires contact details unless anonymous; LAPOR! keeps them, the export
        # does not. Unknown identity is submitted as anonymous: nothing to hide, nothing lost.
        "anonymous": anonymous or not identified,
        "confidential": confidential,
    }
    if reporter:
        submission["reporter"] = reporter
    facts = {k: v for k, v in {
        "status": status, "category_label": label or None,
        "category_id": _text(cell("category_id")) or None, "instansi": disposed_to,
        "rating": _text(cell("rating")) or None, "alasan_tunda": _text(cell("alasan_tunda")) or None,
        "alasan_arsip": _text(cell("alasan_arsip")) or None}.items() if v is not None}
    if lapor_status is not None:
        if not lapor_status.known:
            notes.append(f"Status Laporan {status!r} tidak dikenal: diimpor sebagai laporan baru (DITERIMA)")
        history, filled = history_of(lapor_status, when, dates, opd_code, rating, facts,
                                     forwarded_to=disposed_to)
        submission["history"] = history
        if filled:
            notes.append(f"tanggal tidak ada di ekspor, dipakai tanggal langkah sebelumnya: "
                         f"{', '.join(filled)}")
    elif facts:
        submission["history"] = {"state": "DITERIMA", "lapor": facts}
    return ExportRow(row_number, tracking_id, submission, None, status=status,
                     disposed_to=disposed_to, channel=channel, notes=tuple(notes),
                     anonymous_by_default=not anonymous and not identified,
                     state=lapor_status.state if lapor_status else "DITERIMA",
                     historical=bool(lapor_status and lapor_status.historical),
                     opd_code=opd_code, triage=triage or not label)


_STEP_LABELS = {"verified_at": "Tanggal Verifikasi", "disposed_at": "Tanggal Disposisi",
                "responded_at": "Tanggal Tindak Lanjut", "reporter_replied_at": "Tanggal Ditanggapi Pelapor",
                "closed_at": "Tanggal Selesai", "deferred_at": "Tanggal Tunda",
                "returned_at": "Tanggal Dikembalikan"}
_ARCHIVE_WORDS = (("duplikat", "lainnya"), ("ganda", "lainnya"), ("umum", "terlalu_umum"),
                  ("format", "format_salah"), ("pelayanan publik", "bukan_pelayanan_publik"),
                  ("tidak ada tanggapan", "tidak_ada_tanggapan_pelapor"),
                  ("tidak menanggapi", "tidak_ada_tanggapan_pelapor"))


def history_of(st: LaporStatus, received: datetime, dates: dict[str, datetime | None],
               opd_code: str | None, rating: int | None, facts: dict[str, str],
               forwarded_to: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """The ``history`` object intake replays, and the steps whose date was filled in from
    the step before (LAPOR! exports often carry only the last status's date)."""
    state = st.state
    via_opd = state in DISPOSED_STATES
    wanted: list[tuple[str, str | None]] = []  # (history field, export column key)
    if state != "DITERIMA":
        wanted.append(("verified_at", "verified_date"))
    if state == "DITUNDA":
        wanted.append(("deferred_at", "closed_date"))
    if via_opd:
        wanted.append(("disposed_at", "disposed_date"))
    if state == "DIKEMBALIKAN":
        wanted.append(("returned_at", "closed_date"))
    if state in ("DITINDAKLANJUTI", "DITANGGAPI_PELAPOR", "SELESAI"):
        wanted.append(("responded_at", "followup_date"))
    if state == "DITANGGAPI_PELAPOR":
        wanted.append(("reporter_replied_at", "reply_date"))
    if state in HISTORICAL_STATES:
        wanted.append(("closed_at", "closed_date"))
    history: dict[str, Any] = {"state": state, "historical": st.historical}
    filled: list[str] = []
    last = received
    for name, column in wanted:
        value = dates.get(column) if column else None
        if value is None or value < last:
            if column in dates:
                filled.append(_STEP_LABELS[name])
            value = last
        history[name] = value.isoformat()
        last = value
    if via_opd and opd_code is not None:
        history["opd_code"] = opd_code
    if state == "SELESAI":
        history["closed_by"] = "system" if st.by == "system" else "admin_koordinator"
    if state == "DIARSIPKAN":
        reason = normalize_label(facts.get("alasan_arsip"))
        history["archive_reason"] = next((code for word, code in _ARCHIVE_WORDS if word in reason),
                                         "lainnya")
        note = f"diarsipkan oleh {'sistem' if st.by == 'system' else 'admin'} di SP4N-LAPOR!"
        history["note"] = _clip(f"{note}: {facts['alasan_arsip']}" if facts.get("alasan_arsip")
                                else note, 1000)
    if state == "DILIMPAHKAN":
        history["forwarded_to"] = _clip(forwarded_to or "instansi di luar kabupaten (SP4N-LAPOR!)", 200)
    if rating is not None and state in ("DITINDAKLANJUTI", "DITANGGAPI_PELAPOR", "SELESAI"):
        history["rating"] = rating
    if facts:
        history["lapor"] = facts
    return history, filled


def rating_of(value: Any) -> int:
    """'Rating' → 1..5 ('4', 4.0, '4/5', '★★★★')."""
    text = _text(value)
    stars = text.count("★")
    if stars:
        return min(5, stars)
    m = re.match(r"^\s*([1-5])(?:[.,]0+)?\s*(?:/\s*5)?\s*$", text)
    if not m:
        raise CellError(f"bukan nilai 1–5: {text!r}")
    return int(m[1])


_DEFAULT_MAPPINGS: list[Mappings] = []


def default_mappings() -> Mappings:
    """The seed tables (loaded once)."""
    if not _DEFAULT_MAPPINGS:
        _DEFAULT_MAPPINGS.append(load_mappings())
    return _DEFAULT_MAPPINGS[0]


# --- workbook ---------------------------------------------------------------------------


@dataclass
class LaporExport:
    path: Path
    sheet: str
    header: Header
    rows: list[ExportRow] = field(default_factory=list)


def read_export(path: str | Path, tz: tzinfo, mappings: Mappings | None = None) -> LaporExport:
    """Every data row of the first sheet that has a LAPOR! header row.

    Raises ``ExportUnreadable`` when the file is not a readable workbook, no header row is
    found, or required columns are missing (all of them named).
    """
    from openpyxl import load_workbook

    path = Path(path)
    try:
        # Not read_only: that mode trusts the file's stated dimensions, which some
        # exporters get wrong, silently dropping rows.
        workbook = load_workbook(path, data_only=True)
    except FileNotFoundError as exc:
        raise ExportUnreadable(f"berkas tidak ditemukan: {path}") from exc
    except Exception as exc:  # noqa: BLE001 - zip, xml and format errors all mean "unreadable"
        raise ExportUnreadable(f"berkas bukan Excel (.xlsx) yang bisa dibaca: {path}: {exc}") from exc
    try:
        sheets = [workbook.active] + [ws for ws in workbook.worksheets if ws is not workbook.active]
        incomplete: tuple[str, Header] | None = None
        for ws in sheets:
            if ws is None:
                continue
            rows = [tuple(r) for r in ws.iter_rows(values_only=True)]
            header = find_header(rows)
            if header is None:
                continue
            if header.missing:
                incomplete = incomplete or (ws.title, header)
                continue
            export = LaporExport(path, ws.title, header)
            export.rows = _data_rows(rows, header, tz, workbook.epoch, mappings)
            return export
    finally:
        workbook.close()
    if incomplete is not None:
        sheet, header = incomplete
        raise ExportUnreadable(
            f"lembar '{sheet}', baris judul kolom {header.row_number}: kolom wajib tidak ada: "
            f"{', '.join(header.missing)}")
    raise ExportUnreadable(
        f"baris judul kolom tidak ditemukan dalam {HEADER_SEARCH_ROWS} baris pertama lembar mana "
        f"pun; diharapkan kolom seperti: {', '.join(c.label for c in COLUMNS if c.required)}")


def _same_report(a: dict[str, Any], b: dict[str, Any] | None) -> bool:
    return b is not None and {k: v for k, v in a.items() if k != "history"} == {
        k: v for k, v in b.items() if k != "history"}


def _data_rows(rows: list[tuple[Any, ...]], header: Header, tz: tzinfo, epoch: datetime,
               mappings: Mappings | None = None) -> list[ExportRow]:
    out: list[ExportRow] = []
    first_seen: dict[str, ExportRow] = {}
    for number, values in enumerate(rows[header.row_number:], start=header.row_number + 1):
        if all(_text(v) == "" for v in values):
            continue
        row = map_row(values, header, number, tz, epoch, mappings)
        earlier = first_seen.get(row.tracking_id) if row.tracking_id else None
        if earlier is None:
            if row.tracking_id:
                first_seen[row.tracking_id] = row
        elif row.submission is not None and _same_report(row.submission, earlier.submission):
            # LAPOR! repeats a report once per disposition; intake needs it once (with the
            # first row's history: sp4n disposes to one OPD at a time).
            row = replace(row, duplicate_of=earlier.row_number)
        elif row.submission is not None:
            row = replace(row, submission=None, error=(
                f"Tracking ID {row.tracking_id} sudah dipakai baris {earlier.row_number} "
                f"dengan isi berbeda"))
        out.append(row)
    return out

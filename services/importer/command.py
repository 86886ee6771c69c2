"""``sp4n import-lapor``: read a LAPOR! export, submit every row through intake, summarise.

Exit codes: 0 all rows imported or already present; 1 some rows rejected (fix the data and
re-run: accepted rows are a no-op the second time); 2 the file is unreadable, its header
row or required columns are missing, or intake refused the key/address; 3 some rows failed
on the network or with 5xx after retries (re-run later; nothing is duplicated).
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from pydantic import ValidationError
from tqdm import tqdm

from services.importer.lapor import ExportRow, ExportUnreadable, LaporExport, read_export
from services.importer.mapping import Mappings, MappingUnreadable, load_mappings
from services.importer.submit import ImportAborted, Job, Outcome, RetryPolicy, submit_all
from services.intake.errors import describe
from services.intake.schemas import ComplaintIn

EXIT_OK, EXIT_REJECTED, EXIT_UNREADABLE, EXIT_FAILED = 0, 1, 2, 3
DEFAULT_RETRY = RetryPolicy()  # frozen: safe to share as a default


@dataclass
class ImportReport:
    path: Path
    dry_run: bool = False
    export: LaporExport | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    fatal: str | None = None  # why nothing (more) could be imported
    tz: tzinfo | None = None  # the regency's zone (working days of the rates)

    def of(self, kind: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind == kind]

    @property
    def imported(self) -> int:
        return len(self.of("imported"))

    @property
    def present(self) -> int:
        return len(self.of("present"))

    @property
    def rejected(self) -> list[Outcome]:
        return sorted(self.of("rejected"), key=lambda o: o.row_number)

    @property
    def failed(self) -> list[Outcome]:
        return sorted(self.of("failed"), key=lambda o: o.row_number)

    @property
    def valid(self) -> int:  # dry run: rows intake's contract accepts
        return len(self.of("valid"))

    @property
    def rows(self) -> list[ExportRow]:
        return self.export.rows if self.export else []

    @property
    def duplicates(self) -> list[ExportRow]:
        return [r for r in self.rows if r.duplicate_of is not None]

    @property
    def exit_code(self) -> int:
        if self.fatal:
            return EXIT_UNREADABLE
        if self.failed:
            return EXIT_FAILED
        return EXIT_REJECTED if self.rejected else EXIT_OK

    def render(self) -> str:
        if self.export is None:
            return f"Impor LAPOR! gagal: {self.fatal}"
        e = self.export
        lines = [f"Impor LAPOR!{' (uji coba, tidak ada yang dikirim)' if self.dry_run else ''}: "
                 f"{e.path.name}, lembar '{e.sheet}', judul kolom di baris {e.header.row_number}",
                 f"  baris data                 : {len(e.rows)}"]
        if self.dry_run:
            lines.append(f"  valid, siap dikirim        : {self.valid}")
        else:
            lines += [f"  diimpor (baru, 202)        : {self.imported}",
                      f"  sudah ada (200)            : {self.present}"]
        lines.append(f"  ditolak                    : {len(self.rejected)}")
        if not self.dry_run:
            lines.append(f"  gagal (jaringan/server)    : {len(self.failed)}")
        if self.duplicates:
            lines.append(f"  baris ganda (dilewati)     : {len(self.duplicates)}")
        if self.fatal:
            lines += ["", f"DIHENTIKAN: {self.fatal}"]
        if self.rejected:
            lines += ["", "Ditolak (perbaiki lalu impor ulang; baris yang sudah masuk tidak berubah):"]
            lines += [f"  baris {o.row_number}: {o.detail}" for o in self.rejected]
        if self.failed:
            lines += ["", "Gagal (impor ulang nanti; tidak akan ganda):"]
            lines += [f"  baris {o.row_number}: {o.detail}" for o in self.failed]
        notes = self._notes()
        if notes:
            lines += ["", "Catatan:"] + [f"  {n}" for n in notes]
        lines += self._per_state()
        if "channel" in e.header.columns:
            counts = Counter(r.channel or "(kosong)" for r in e.rows)
            lines += ["", "Sumber Laporan (tidak dikirim ke intake):"]
            lines += [f"  {n:>5}  {name}" for name, n in counts.most_common()]
        lines += self._rates()
        return "\n".join(lines)

    def landed(self) -> list[ExportRow]:
        """Rows now in sp4n (imported now or already present; dry run: valid)."""
        kinds = ("valid",) if self.dry_run else ("imported", "present")
        numbers = {o.row_number for o in self.outcomes if o.kind in kinds}
        return [r for r in self.rows if r.row_number in numbers]

    def _per_state(self) -> list[str]:
        landed = self.landed()
        if not landed:
            return []
        counts = Counter((r.state or "DITERIMA", r.historical) for r in landed)
        lines = ["", "Per status sp4n (" + ("siap dikirim" if self.dry_run else "diimpor atau sudah ada")
                 + "; riwayat = sudah selesai/diarsipkan di LAPOR!, tanpa tenggat berjalan):"]
        for (state, historical), n in sorted(counts.items()):
            lines.append(f"  {n:>5}  {state}{' (riwayat)' if historical else ''}")
        return lines

    def _rates(self) -> list[str]:
        rates = import_rates(self.landed(), self.tz if isinstance(self.tz, ZoneInfo) else None)
        if rates is None:
            return []
        return ["", f"Kinerja periode impor ({rates.first:%d-%m-%Y} s.d. {rates.last:%d-%m-%Y}, "
                    f"dihitung dari baris yang diimpor; angka resmi: sp4n report / halaman /kinerja):",
                f"  terdisposisi               : {rates.disposed}",
                f"  tingkat tindak lanjut      : {_pct(rates.followed_up, rates.disposed)}"
                f"  ({rates.followed_up} ditindaklanjuti)",
                f"  tingkat penyelesaian       : {_pct(rates.completed, rates.disposed)}"
                f"  ({rates.completed} selesai)",
                f"  ketepatan waktu            : {_pct(rates.on_time, rates.disposed)}"
                f"  ({rates.on_time} tindak lanjut pertama ≤ {OPD_RESPONSE_WORKING_DAYS} HK; "
                f"kalender libur nasional tanpa hari libur kabupaten)"]

    def _notes(self) -> list[str]:
        notes = []
        by_default = [r for r in self.rows if r.anonymous_by_default]
        if by_default:
            notes.append(f"{len(by_default)} baris bukan Anonim di LAPOR! tetapi dikirim anonymous=true: "
                         f"ekspor tidak memuat nama dan kontak pelapor")
        for r in self.duplicates:
            notes.append(f"baris {r.row_number}: Tracking ID {r.tracking_id} sama persis dengan baris "
                         f"{r.duplicate_of} (mis. disposisi ke beberapa instansi); dikirim sekali")
        for r in self.rows:
            notes += [f"baris {r.row_number}: {n}" for n in r.notes]
        sent = {o.row_number for o in self.outcomes if o.kind in ("imported", "valid")}
        triage = [r for r in self.rows if r.triage and r.row_number in sent]
        if triage:
            notes.append(f"{len(triage)} baris dengan Kategori di luar tabel pemetaan (atau kosong): "
                         f"masuk triase admin koordinator")
        open_rows = [r for r in self.rows if not r.historical and r.row_number in sent]
        if open_rows:
            notes.append(f"{len(open_rows)} baris masih terbuka di LAPOR!: masuk sebagai laporan berjalan, "
                         f"tenggatnya dihitung dari tanggal asli dan bisa langsung terlambat")
        return notes


OPD_RESPONSE_WORKING_DAYS = 5  # sla's default opd_response policy
FOLLOWED_UP = frozenset({"DITINDAKLANJUTI", "DITANGGAPI_PELAPOR", "SELESAI"})


@dataclass(frozen=True)
class ImportRates:
    first: date
    last: date
    disposed: int
    followed_up: int
    completed: int
    on_time: int


def _pct(n: int, d: int) -> str:
    return f"{100 * n / d:5.1f}%" if d else "    -"


def import_rates(rows: list[ExportRow], tz: ZoneInfo | None = None) -> ImportRates | None:
    """The regency's three rates over the rows (issue 11's definitions: disposed in the
    period; a tindak lanjut; completed; the first tindak lanjut within the OPD's clock)."""
    from services.sla.calendar import WorkingCalendar

    bodies = [r.submission for r in rows if r.submission is not None]
    if not bodies:
        return None
    zone = tz or ZoneInfo("Asia/Pontianak")
    received = [datetime.fromisoformat(b["received_at"]).astimezone(zone).date() for b in bodies]
    calendar = WorkingCalendar(zone)
    disposed = followed = completed = on_time = 0
    for b in bodies:
        h = b.get("history") or {}
        if not h.get("disposed_at"):
            continue
        disposed += 1
        if h.get("state") in FOLLOWED_UP and h.get("responded_at"):
            followed += 1
            deadline = calendar.deadline(datetime.fromisoformat(h["disposed_at"]), OPD_RESPONSE_WORKING_DAYS)
            on_time += datetime.fromisoformat(h["responded_at"]) <= deadline
        completed += h.get("state") == "SELESAI"
    return ImportRates(min(received), max(received), disposed, followed, completed, on_time)


async def import_lapor(path: str | Path, *, url: str, api_key: str | None, tz: tzinfo,
                       concurrency: int = 8, dry_run: bool = False,
                       client: httpx.AsyncClient | None = None,
                       retry: RetryPolicy = DEFAULT_RETRY, progress: bool = True,
                       timeout_s: float = 30.0, mappings: Mappings | None = None) -> ImportReport:
    """Import one export. ``client`` (its base URL and Authorization header set) replaces
    the one built from ``url`` and ``api_key``: tests pass an in-process ASGI transport."""
    report = ImportReport(Path(path), dry_run=dry_run, tz=tz)
    try:
        report.export = read_export(path, tz, mappings)
    except ExportUnreadable as exc:
        report.fatal = str(exc)
        return report
    sendable = [r for r in report.rows if r.submission is not None and r.duplicate_of is None]
    report.outcomes = [Outcome(r.row_number, r.tracking_id, "rejected", r.error or "")
                       for r in report.rows if r.submission is None]
    if dry_run:
        report.outcomes += [_validate(r) for r in sendable]
        return report
    if not sendable:
        return report

    bar = tqdm(total=len(sendable), file=sys.stderr, unit="baris", desc="impor LAPOR!",
               disable=not progress, dynamic_ncols=True)
    tally: Counter[str] = Counter()

    def done(outcome: Outcome) -> None:
        tally[outcome.kind] += 1
        bar.set_postfix({"baru": tally["imported"], "ada": tally["present"],
                         "tolak": tally["rejected"], "gagal": tally["failed"]}, refresh=False)
        bar.update()

    jobs = [Job(r.row_number, r.tracking_id, r.submission) for r in sendable
            if r.submission is not None]  # always: sendable rows have one
    owned = client is None
    if client is None:
        client = httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout_s,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency))
    try:
        report.outcomes += await submit_all(client, jobs, concurrency=concurrency, retry=retry,
                                            on_done=done)
    except ImportAborted as exc:
        report.fatal = str(exc)
    finally:
        bar.close()
        if owned:
            await client.aclose()
    return report


def _validate(row: ExportRow) -> Outcome:
    """Dry run: the same contract intake applies, without sending."""
    try:
        ComplaintIn.model_validate(row.submission)
    except ValidationError as exc:
        return Outcome(row.row_number, row.tracking_id, "rejected", describe(exc))
    return Outcome(row.row_number, row.tracking_id, "valid")


def run(file: str | Path, *, url: str, api_key: str | None, tz: tzinfo, concurrency: int = 8,
        dry_run: bool = False, print_out: Callable[[str], None] = print,
        kategori_map: str | Path | None = None, instansi_map: str | Path | None = None) -> int:
    """The CLI entry (``sp4n import-lapor``, in ``services.cli.intake``): import, print the
    summary, return the exit code."""
    if not dry_run and not api_key:
        print("--api-key (atau SP4N_API_KEY) wajib kecuali dengan --dry-run", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        mappings = load_mappings(kategori_map, instansi_map)
    except MappingUnreadable as exc:
        print(f"Impor LAPOR! gagal: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    report = asyncio.run(import_lapor(
        file, url=url, api_key=api_key, tz=tz, concurrency=max(1, concurrency), dry_run=dry_run,
        mappings=mappings))
    print_out(report.render())
    return report.exit_code

"""What LAPOR! already knows, in sp4n's terms: its status strings as lifecycle states, and
the editable tables that map its Kategori and Instansi Terdisposisi labels to the regency's
category and OPD codes. Pure: files are read once, by ``load_mappings``.

Status strings are matched liberally (case, spaces, punctuation, word order: ``Ditutup oleh
Admin``, ``DITUTUP - ADMIN``, ``Selesai``); a string nobody recognises is imported as an open,
received complaint with a note, never guessed into a closed one.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

SEED = Path(__file__).parent / "seed"

# sp4n states a LAPOR! row can be in (``services.intake.lifecycle.State`` values).
LaporState = Literal["DITERIMA", "TERVERIFIKASI", "DITUNDA", "TERDISPOSISI", "DIKEMBALIKAN",
                     "DITINDAKLANJUTI", "DITANGGAPI_PELAPOR", "SELESAI", "DIARSIPKAN", "DILIMPAHKAN"]
# Closed there: imported as history (no clock runs for it), with the outcome LAPOR! knows.
HISTORICAL_STATES = frozenset({"SELESAI", "DIARSIPKAN", "DILIMPAHKAN"})


@dataclass(frozen=True)
class LaporStatus:
    state: LaporState
    by: Literal["admin", "system"] | None = None  # who closed or archived it in LAPOR!
    known: bool = True  # False: the text was not recognised (imported as DITERIMA)

    @property
    def historical(self) -> bool:
        return self.state in HISTORICAL_STATES


def _words(text: Any) -> list[str]:
    s = unicodedata.normalize("NFKD", str(text or "")).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^0-9a-z]+", " ", s).split()


def normalize(text: Any) -> str:
    """'  Dinas  PUPR. ' → 'dinas pupr' (the key of every mapping table)."""
    return " ".join(_words(text))


def status_of(text: Any) -> LaporStatus:
    """A 'Status Laporan' cell → its state. Order matters: the most specific words first."""
    words = set(_words(text))
    joined = " ".join(_words(text))
    by: Literal["admin", "system"] | None = (
        "system" if words & {"sistem", "system", "otomatis"} else
        "admin" if words & {"admin", "administrator", "operator"} else None)
    if not words:
        return LaporStatus("DITERIMA", known=False)
    if words & {"diarsipkan", "arsip", "diarsip", "archived"}:
        return LaporStatus("DIARSIPKAN", by or "admin")
    if words & {"ditutup", "selesai", "tutup", "closed", "tuntas"}:
        return LaporStatus("SELESAI", by or "admin")
    if words & {"dilimpahkan", "limpah", "pelimpahan", "dialihkan"}:
        return LaporStatus("DILIMPAHKAN", "admin")
    if "pelapor" in words and words & {"ditanggapi", "tanggapan", "menanggapi", "dibalas"}:
        return LaporStatus("DITANGGAPI_PELAPOR")
    if words & {"dikembalikan", "kembali"} or "bukan wewenang" in joined:
        return LaporStatus("DIKEMBALIKAN")
    if words & {"ditindaklanjuti", "tindaklanjut", "ditanggapi", "tanggapan"} or "tindak lanjut" in joined:
        return LaporStatus("DITINDAKLANJUTI")
    if words & {"didisposisikan", "terdisposisi", "disposisi", "didisposisi", "diteruskan"}:
        return LaporStatus("TERDISPOSISI")
    if words & {"ditunda", "tunda", "pending"}:
        return LaporStatus("DITUNDA")
    if words & {"belum", "menunggu", "baru", "diterima", "masuk", "draft"}:
        return LaporStatus("DITERIMA")
    if words & {"terverifikasi", "diverifikasi", "verifikasi", "verified"}:
        return LaporStatus("TERVERIFIKASI")
    return LaporStatus("DITERIMA", known=False)


# Rows whose state means an OPD got it: the disposition must be known.
DISPOSED_STATES = frozenset({"TERDISPOSISI", "DIKEMBALIKAN", "DITINDAKLANJUTI",
                             "DITANGGAPI_PELAPOR", "SELESAI"})


class MappingUnreadable(Exception):
    pass


@dataclass
class Mappings:
    """LAPOR! label (normalised) → regency code, for Kategori and Instansi Terdisposisi."""

    kategori: dict[str, str] = field(default_factory=dict)
    instansi: dict[str, str] = field(default_factory=dict)
    opd_codes: frozenset[str] = frozenset()

    def category(self, label: Any) -> str | None:
        return self.kategori.get(normalize(label))

    def opd(self, label: Any) -> str | None:
        key = normalize(label)
        if key in self.instansi:
            return self.instansi[key]
        # An export may name the OPD by its code ('dinkes') or with the regency's name after it.
        if key.replace(" ", "_") in self.opd_codes:
            return key.replace(" ", "_")
        for suffix in (" kabupaten sekadau", " kab sekadau", " sekadau"):
            if key.endswith(suffix) and key.removesuffix(suffix) in self.instansi:
                return self.instansi[key.removesuffix(suffix)]
        return None


def read_table(path: str | Path) -> dict[str, str]:
    """A mapping file: JSON (``{"label": "code"}``) or CSV (two columns: label, code; a
    header row is allowed). Keys starting with '_' are comments."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise MappingUnreadable(f"berkas pemetaan tidak dapat dibaca: {path}: {exc}") from exc
    pairs: list[tuple[str, str]] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise MappingUnreadable(f"{path}: bukan JSON yang sah: {exc}") from exc
        if not isinstance(data, dict):
            raise MappingUnreadable(f"{path}: harus berupa objek JSON {{\"label\": \"kode\"}}")
        pairs = [(str(k), str(v)) for k, v in data.items() if not str(k).startswith("_")]
    else:
        for row in csv.reader(text.splitlines()):
            if len(row) >= 2 and row[0].strip() and not row[0].startswith("_"):
                pairs.append((row[0], row[1]))
        if pairs and normalize(pairs[0][0]) in {"label", "label lapor", "kategori", "instansi"}:
            pairs = pairs[1:]
    table: dict[str, str] = {}
    for label, code in pairs:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.\-]{1,39}", code.strip()):
            raise MappingUnreadable(f"{path}: kode {code!r} untuk {label!r} tidak sah "
                                    f"(huruf kecil, angka, '_', '.', '-')")
        table[normalize(label)] = code.strip()
    return table


def load_mappings(kategori: str | Path | None = None, instansi: str | Path | None = None) -> Mappings:
    """The seed tables, with the operator's files on top (their rows win)."""
    from services.intake.catalog import load_catalog

    catalog = load_catalog()
    kat = {normalize(s.name): s.code for s in catalog.services}
    kat.update({normalize(s.code): s.code for s in catalog.services})
    kat.update(read_table(SEED / "kategori.json"))
    ins = {normalize(o.name): o.code for o in catalog.opds}
    ins.update(read_table(SEED / "instansi.json"))
    if kategori is not None:
        kat.update(read_table(kategori))
    if instansi is not None:
        ins.update(read_table(instansi))
    return Mappings(kat, ins, frozenset(o.code for o in catalog.opds))

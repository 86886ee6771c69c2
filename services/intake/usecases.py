"""intake's use cases. They take their collaborators as arguments and know no broker."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timezone
from typing import Protocol
from zoneinfo import ZoneInfo

from services.intake.actions import SOURCE, close_by_system
from services.intake.lifecycle import State

from services.intake.identity import fingerprint, new_tracking_id, reporter_ref
from services.intake.idempotency import conflicting_fields
from services.intake.repository import IntakeRepository
from services.intake.schemas import ComplaintIn
from shared.events import CloudEvent, ComplaintSubmitted, Location, make_event
from shared.uow import Tx

CLOCK_LABELS = {
    "verification": "verifikasi dan disposisi",
    "opd_response": "tindak lanjut pertama OPD",
    "completion": "penyelesaian",
    "auto_close": "penutupan otomatis",
}


@dataclass(frozen=True)
class Accepted:
    complaint_id: uuid.UUID
    tracking_id: str
    status: str
    created: bool  # False: an idempotent retry of an already accepted complaint


class SubmissionConflict(Exception):
    def __init__(self, complaint_id: uuid.UUID, tracking_id: str, fields: list[str]) -> None:
        super().__init__(f"external_id already used for different content: {', '.join(fields)}")
        self.complaint_id = complaint_id
        self.tracking_id = tracking_id
        self.fields = fields


class UnknownComplaint(Exception):
    """An event names a complaint intake never accepted."""


@dataclass(frozen=True)
class IntakeConfig:
    region_code: str
    tz: ZoneInfo
    reporter_ref_key: str


class IntakeUnitOfWork(Protocol):
    """``shared.uow.PgUnitOfWork`` on ``IntakeRepository`` (or the in-memory fake)."""

    def __call__(self, event: CloudEvent | None = None, *, single_statement: bool = False
                 ) -> AbstractAsyncContextManager[Tx[IntakeRepository]]: ...

    def read(self) -> AbstractAsyncContextManager[IntakeRepository]: ...


async def submit_complaint(uow: IntakeUnitOfWork, sub: ComplaintIn, cfg: IntakeConfig,
                           now: datetime) -> Accepted:
    """Accept a complaint exactly once per (source, external_id).

    The complaint, its reporter and its ``complaint.submitted`` event are written together,
    in one statement (``single_statement``): no surrounding transaction is needed.
    """
    canonical = sub.canonical()
    reporter = sub.reporter.model_dump() if sub.reporter else None
    reporter_fp = fingerprint(reporter, cfg.reporter_ref_key)
    complaint_id = uuid.uuid4()
    ref = _reporter_ref(sub, cfg)
    for _ in range(3):
        tracking_id = new_tracking_id(cfg.region_code, now, cfg.tz)
        event = make_event(SOURCE, ComplaintSubmitted(
            complaint_id=complaint_id, tracking_id=tracking_id, source=sub.source,
            received_at=sub.received_at, accepted_at=now, classification=sub.classification,
            berkadar_pengawasan=sub.berkadar_pengawasan, category=sub.category,
            location=Location(kecamatan=sub.location.kecamatan, desa=sub.location.desa),
            anonymous=sub.anonymous, confidential=sub.confidential, reporter_ref=ref,
        ), time=now)
        row = {
            "id": complaint_id, "tracking_id": tracking_id, "source": sub.source,
            "external_id": sub.external_id, "fingerprint": fingerprint(canonical),
            "submission": canonical, "classification": sub.classification,
            "category": sub.category, "title": sub.title,
            "kecamatan": sub.location.kecamatan, "desa": sub.location.desa,
            "anonymous": sub.anonymous, "confidential": sub.confidential,
            "reporter_ref": ref, "received_at": sub.received_at, "accepted_at": now,
        }
        async with uow(single_statement=True) as tx:
            tx.stage(event)
            created = await tx.repo.accept(row, reporter, reporter_fp,
                                           f"Laporan diterima dari {sub.source}")
        if created:
            break
        async with uow(single_statement=True) as tx:
            existing = await tx.repo.find_by_source(sub.source, sub.external_id)
        if existing is not None:
            diffs = conflicting_fields(existing["submission"], existing["reporter_fp"],
                                       canonical, reporter_fp)
            if diffs:
                raise SubmissionConflict(existing["id"], existing["tracking_id"], diffs)
            return Accepted(existing["id"], existing["tracking_id"], existing["status"], created=False)
        # Not a retry: the random tracking id clashed; draw another.
    else:  # pragma: no cover - 30 random bits a day make three clashes in a row unheard of
        raise RuntimeError("could not allocate a unique tracking id")

    return Accepted(complaint_id, tracking_id, "DITERIMA", created=True)


def _reporter_ref(sub: ComplaintIn, cfg: IntakeConfig) -> str:
    r = sub.reporter
    return reporter_ref(cfg.reporter_ref_key, sub.anonymous,
                        r and r.nik, r and r.phone, r and r.email, r and r.name)


async def record_event(uow: IntakeUnitOfWork, event: CloudEvent, tz: ZoneInfo,
                       now: datetime | None = None) -> bool:
    """Apply a downstream event to the complaint's status, clocks and timeline.

    Returns False for a redelivery (no effect). Events that no
    longer fit the complaint's state (reordered, or overtaken by a person's action) are
    noted on the timeline and otherwise ignored.

    The complaint row is locked first (lifecycle actions and these events serialise per
    complaint), then the inbox decides; every event but the reply window's does that, its
    effect and its timeline entry in one statement (``IntakeRepository.apply_event``).
    """
    complaint_id = uuid.UUID(event.subject or event.data["complaint_id"])
    if event.source == SOURCE:
        # intake's own lifecycle event coming back: applied when it was emitted
        effect, args, summary = None, (), None
    elif event.event_name == "sla.reply_window_elapsed":
        return await _record_reply_window_elapsed(uow, complaint_id, event, tz, now)
    else:
        effect, args, summary = _effect_of(event, tz)
    async with uow(event) as tx:
        applied = await tx.repo.apply_event(complaint_id, event, effect, args, summary)
        if applied is None:
            raise UnknownComplaint(f"complaint {complaint_id} is not known to intake")
        if not applied.first or event.source == SOURCE:
            return False
        if effect == "mark_routed" and not applied.applied:
            d = event.data
            await tx.repo.add_timeline(complaint_id, event, (
                f"Disposisi otomatis ke {d['opd_name']} (disposisi ke-{d['hop']}) diabaikan: "
                f"laporan sudah berstatus {applied.status} (disposisi ke-{applied.hop})"))
    return True


def _effect_of(event: CloudEvent, tz: ZoneInfo) -> tuple[str | None, tuple, str]:
    """The repository effect an event has (its name and arguments) and its timeline summary."""
    d = event.data
    name = event.event_name
    label = CLOCK_LABELS.get(d.get("clock", ""), d.get("clock", ""))
    if name == "complaint.routed":
        return ("mark_routed",
                (d["opd_code"], d["opd_name"], d["hop"], datetime.fromisoformat(d["routed_at"])),
                f"Didisposisikan ke {d['opd_name']} (disposisi ke-{d['hop']})")
    if name == "complaint.routing_suggested":
        return ("set_suggestion",
                (d["opd_code"], d["opd_name"], d["rule_id"],
                 datetime.fromisoformat(d["suggested_at"])),
                f"Saran disposisi: {d['opd_name']} (menunggu keputusan admin koordinator)")
    if name == "complaint.duplicate_suspected":
        ids = [uuid.UUID(c) for c in d["candidate_ids"]]
        return ("add_duplicate_candidates", (ids,),
                f"Diduga duplikat: {len(ids)} laporan serupa di desa yang sama dalam "
                f"{d['window_days']} hari terakhir")
    if name == "complaint.triage_required":
        return "mark_needs_triage", (), f"Menunggu triase admin koordinator: {d['reason']}"
    if name == "sla.clock_started":
        return ("upsert_clock_started",
                (d["clock"], d["hop"], d["opd_code"], datetime.fromisoformat(d["started_at"]),
                 datetime.fromisoformat(d["deadline"]), d["working_days"],
                 d["calendar_version"], d["policy_version"]),
                f"Tenggat {label}: {_local(d['deadline'], tz)} ({d['working_days']} hari kerja)")
    if name == "sla.clock_stopped":
        return ("upsert_clock_flag",
                (d["clock"], d["hop"], d.get("opd_code"), datetime.fromisoformat(d["stopped_at"]),
                 False, False, None),
                f"Tenggat {label} berhenti ({'tepat waktu' if d['on_time'] else 'terlambat'})")
    if name == "sla.warning":
        return ("upsert_clock_flag", (d["clock"], d["hop"], d.get("opd_code"), None, False, True,
                                      None),
                f"Peringatan: tenggat {label} jatuh pada {_local(d['deadline'], tz)}")
    if name == "sla.breached":
        return ("upsert_clock_flag",
                (d["clock"], d["hop"], d.get("opd_code"), None, True, False,
                 datetime.fromisoformat(d["deadline"])),
                f"Tenggat {label} terlampaui ({_local(d['deadline'], tz)})")
    return None, (), name


async def _record_reply_window_elapsed(uow: IntakeUnitOfWork, complaint_id: uuid.UUID,
                                       event: CloudEvent, tz: ZoneInfo,
                                       now: datetime | None) -> bool:
    async with uow(event) as tx:
        # Lock the row: lifecycle actions and these events serialise per complaint.
        row = await tx.repo.lock(complaint_id)
        if row is None:
            raise UnknownComplaint(f"complaint {complaint_id} is not known to intake")
        if not await tx.claim():
            return False
        summary = await _reply_window_elapsed(tx, row, event.data, tz,
                                              now or datetime.now(timezone.utc))
        await tx.repo.add_timeline(complaint_id, event, summary)
    return True


async def _reply_window_elapsed(tx: Tx[IntakeRepository], row, d: dict, tz: ZoneInfo,
                                now: datetime) -> str:
    """Close the complaint (``closed_by: system``) iff it still waits on the reporter after the
    very response the window was about; returns the timeline summary either way."""
    responded_at = datetime.fromisoformat(d["responded_at"])
    last_response, last_reply = row["last_responded_at"], row["last_reply_at"]
    deadline = _local(d["deadline"], tz)
    if (row["status"] == State.DITINDAKLANJUTI and row["hop"] == d["hop"]
            and last_response is not None and last_response <= responded_at
            and (last_reply is None or last_reply < responded_at)):
        await close_by_system(tx, row, max(now, row["last_transition_at"] or now), (
            "Laporan ditutup otomatis oleh sistem: pelapor tidak menanggapi tindak lanjut hingga "
            f"{deadline}"))
        return f"Batas waktu tanggapan pelapor ({deadline}) lewat tanpa tanggapan"
    return (f"Batas waktu tanggapan pelapor ({deadline}) lewat, tetapi laporan tidak ditutup: "
            f"status {row['status']}, disposisi ke-{row['hop']}")


def _local(value: str, tz: ZoneInfo) -> str:
    return datetime.fromisoformat(value).astimezone(tz).strftime("%d-%m-%Y %H:%M %Z")

"""Issue 10's scenarios, one row each: a complaint's timeline (events in the order sla processes
them, each with the instant it is processed), and what its clocks must be afterwards.

Driven through the real use case with the in-memory unit of work (``test_sla_usecases.Sla``);
``expect`` maps (clock, hop, instance) to the clock's end: "running", "stopped" (met),
"cancelled", or "absent"; ``events`` lists (event name, clock) pairs that must have been
emitted, ``never`` those that must not."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from services.sla import usecases
from services.sla.calendar import WorkingCalendar
from services.sla.clocks import CompletionMetBy
from services.sla.domain import ClockRow
from services.sla.policy import default_policies
from shared.events import (
    CloudEvent,
    ComplaintArchived,
    ComplaintClosed,
    ComplaintDeferred,
    ComplaintReclassified,
    ComplaintReopened,
    ComplaintReporterReplied,
    ComplaintResponded,
    ComplaintResumed,
    ComplaintReturned,
    ComplaintRouted,
    ComplaintSubmitted,
    ComplaintWithdrawn,
    EventData,
    Location,
    make_event,
)
from tests.unit.test_sla_usecases import CALENDAR, T0, Sla

CID = uuid.UUID(int=10)


def day(n: int, hour: int = 10) -> datetime:
    """The n-th working day after T0's date, at ``hour`` local time."""
    return datetime.combine(CALENDAR.nth_working_day_after(T0.date(), n),
                            datetime.min.time().replace(hour=hour), tzinfo=T0.tzinfo)


def submitted(classification: str = "pengaduan", historical: bool = False) -> ComplaintSubmitted:
    return ComplaintSubmitted(
        complaint_id=CID, tracking_id="SKD-T", source="portal", received_at=T0, accepted_at=T0,
        classification=classification, category="jalan",  # type: ignore[arg-type]
        location=Location(kecamatan="Belitang"), anonymous=False, confidential=False,
        reporter_ref="ref", historical=historical)


def routed(at: datetime, hop: int = 1, opd: str = "pupr") -> ComplaintRouted:
    return ComplaintRouted(complaint_id=CID, opd_code=opd, opd_name=opd, hop=hop, routed_at=at)


def responded(at: datetime, hop: int = 1, no: int = 1, final: bool = True,
              opd: str = "pupr") -> ComplaintResponded:
    return ComplaintResponded(complaint_id=CID, opd_code=opd, hop=hop, response_no=no,
                              responded_at=at, final=final)


def replied(at: datetime, hop: int = 1) -> ComplaintReporterReplied:
    return ComplaintReporterReplied(complaint_id=CID, replied_at=at, opd_code="pupr", hop=hop)


def closed(at: datetime) -> ComplaintClosed:
    return ComplaintClosed(complaint_id=CID, closed_at=at, closed_by="system", opd_code="pupr",
                           hop=1)


def deferred(at: datetime) -> ComplaintDeferred:
    return ComplaintDeferred(complaint_id=CID, deferred_at=at)


def resumed(at: datetime, deferred_at: datetime) -> ComplaintResumed:
    return ComplaintResumed(complaint_id=CID, resumed_at=at, deferred_at=deferred_at)


SCAN = None  # a timeline step that runs the scanner as of its instant instead of an event


@dataclass
class Row:
    name: str
    timeline: list[tuple[EventData | None, datetime]]
    expect: dict[tuple[str, int, int], str]
    events: list[tuple[str, str]] = field(default_factory=list)
    never: list[tuple[str, str]] = field(default_factory=list)
    met_by: CompletionMetBy = "final_response"
    scan_at: datetime | None = None  # then run the scanner as of this instant
    working_days: dict[tuple[str, int, int], int] = field(default_factory=dict)
    # (clock, hop, instance) → the due time of its one pending breach timer
    breach_due: dict[tuple[str, int, int], datetime] = field(default_factory=dict)
    gap: bool = False  # a known gap of issue 10 item 1 not closed yet: a strict xfail


def reclassified(at: datetime, pengawasan: bool = True) -> ComplaintReclassified:
    return ComplaintReclassified(
        complaint_id=CID, reclassified_at=at, classification="pengaduan",
        berkadar_pengawasan=pengawasan, category="jalan", anonymous=False, confidential=False,
        changed_fields=["berkadar_pengawasan"], reason="Menyangkut dugaan pungli",
        changed_by="admin-1")


ROWS = [
    Row("aspirasi answered on HK1, closed by the system after the reply window: on time",
        [(submitted("aspirasi"), T0), (routed(T0 + timedelta(hours=1)), T0),
         (responded(day(1)), day(1)), (closed(day(11)), day(11))],
        {("completion", 0, 0): "stopped", ("opd_response", 1, 0): "stopped",
         ("auto_close", 1, 1): "cancelled"},
        never=[("sla.breached", "completion")]),
    Row("the old rule (completion_met_by=close): the same timeline breaches at the close",
        [(submitted("aspirasi"), T0), (routed(T0 + timedelta(hours=1)), T0),
         (responded(day(1)), day(1)), (closed(day(11)), day(11))],
        {("completion", 0, 0): "stopped"}, events=[("sla.breached", "completion")],
        met_by="close"),
    Row("pengaduan: the OPD answers on HK4, inside its 5 HK: nothing breaches",
        [(submitted(), T0), (routed(T0 + timedelta(hours=1)), T0), (responded(day(4)), day(4)),
         (closed(day(14)), day(14))],
        {("completion", 0, 0): "stopped", ("opd_response", 1, 0): "stopped"},
        never=[("sla.breached", "completion"), ("sla.breached", "opd_response")]),
    Row("a progress update stops nothing and opens no reply window",
        [(submitted(), T0), (routed(T0), T0), (responded(day(2), final=False), day(2))],
        {("completion", 0, 0): "running", ("opd_response", 1, 0): "running",
         ("auto_close", 1, 1): "absent"}),
    Row("imported history starts no clock",
        [(submitted(historical=True), T0)],
        {("verification", 0, 0): "absent", ("completion", 0, 0): "absent"}),
    Row("a reporter's reply: a new OPD clock instance and the completion clock resumes",
        [(submitted(), T0), (routed(T0), T0), (responded(day(2)), day(2)),
         (replied(day(5)), day(5))],
        {("completion", 0, 0): "stopped", ("completion", 0, 1): "running",
         ("opd_response", 1, 0): "stopped", ("opd_response", 1, 1): "running",
         ("auto_close", 1, 1): "cancelled"}),
    Row("the reply processed before the response (reordered): the same clocks",
        [(submitted(), T0), (routed(T0), T0), (replied(day(5)), day(5)),
         (responded(day(2)), day(5))],
        {("completion", 0, 0): "stopped", ("completion", 0, 1): "running",
         ("opd_response", 1, 1): "running", ("auto_close", 1, 1): "cancelled"}),
    Row("a reopen: a new completion clock and a new OPD clock instance of the hop",
        [(submitted(), T0), (routed(T0), T0), (responded(day(2)), day(2)),
         (closed(day(12)), day(12)),
         (ComplaintReopened(complaint_id=CID, reopened_at=day(13), closed_event_id="e",
                            opd_code="pupr", hop=1), day(13))],
        {("completion", 1, 0): "running", ("opd_response", 1, 1): "running"}),
    Row("a return: the admin's redisposition clock runs until the re-disposition",
        [(submitted(), T0), (routed(T0), T0),
         (ComplaintReturned(complaint_id=CID, opd_code="pupr", hop=1, returned_at=day(1)), day(1)),
         (routed(day(2), hop=2, opd="dinkes"), day(2))],
        {("opd_response", 1, 0): "stopped", ("redisposition", 1, 0): "stopped",
         ("opd_response", 2, 0): "running"},
        events=[("sla.clock_started", "redisposition")]),
    Row("a return never re-disposed breaches the admin's clock (3 HK)",
        [(submitted(), T0), (routed(T0), T0),
         (ComplaintReturned(complaint_id=CID, opd_code="pupr", hop=1, returned_at=day(1)), day(1))],
        {("redisposition", 1, 0): "running"}, events=[("sla.breached", "redisposition")],
        scan_at=day(5)),
    Row("a withdrawal cancels the OPD clock (never its breach) and starts the redisposition clock",
        [(submitted(), T0), (routed(T0), T0),
         (ComplaintWithdrawn(complaint_id=CID, opd_code="pupr", hop=1, withdrawn_at=day(3)), day(3))],
        {("opd_response", 1, 0): "cancelled", ("redisposition", 1, 0): "running"},
        never=[("sla.breached", "opd_response")], scan_at=day(5, 9)),
    Row("DITUNDA without an answer expires into sla.deferral_expired",
        [(submitted(), T0), (deferred(day(1)), day(1))],
        {("deferral", 0, 0): "stopped", ("completion", 0, 0): "running"},
        events=[("sla.deferral_expired", ""), ("sla.clock_stopped", "deferral")],
        scan_at=day(12)),
    Row("defer twice: two deferral clocks, each met by its resume",
        [(submitted(), T0), (deferred(day(1)), day(1)), (resumed(day(2), day(1)), day(2)),
         (deferred(day(3)), day(3)), (resumed(day(4), day(3)), day(4))],
        {("deferral", 0, 0): "stopped", ("deferral", 0, 1): "stopped",
         ("completion", 0, 0): "running"},
        never=[("sla.deferral_expired", "")], scan_at=day(20, 9)),
    Row("an automatic routing processed after the admin archived starts nothing",
        [(submitted(), T0),
         (ComplaintArchived(complaint_id=CID, archived_at=T0 + timedelta(hours=2),
                            reason="terlalu_umum"), T0 + timedelta(hours=2)),
         (routed(T0 + timedelta(minutes=1)), T0 + timedelta(hours=3))],
        {("opd_response", 1, 0): "absent", ("verification", 0, 0): "stopped"}),
    Row("an automatic routing processed after the admin deferred starts nothing",
        [(submitted(), T0), (deferred(T0 + timedelta(hours=2)), T0 + timedelta(hours=2)),
         (routed(T0 + timedelta(minutes=1)), T0 + timedelta(hours=3))],
        {("opd_response", 1, 0): "absent", ("verification", 0, 0): "running"}),
    Row("re-routed: the old OPD answering after the re-route changes nothing",
        [(submitted(), T0), (routed(T0), T0), (routed(day(1), hop=2, opd="dinkes"), day(1)),
         (responded(day(9), hop=1), day(9))],
        {("opd_response", 1, 0): "cancelled", ("opd_response", 2, 0): "running",
         ("completion", 0, 0): "stopped"},
        never=[("sla.breached", "opd_response")]),
    Row("reclassified to berkadar pengawasan: the completion clock moves to 60 HK",
        [(submitted(), T0),
         (ComplaintReclassified(complaint_id=CID, reclassified_at=day(1), classification="pengaduan",
                                berkadar_pengawasan=True, category="jalan", anonymous=False,
                                confidential=False, changed_fields=["berkadar_pengawasan"],
                                reason="Menyangkut dugaan pungli", changed_by="admin-1"), day(1))],
        {("completion", 0, 0): "running"}, events=[("sla.deadline_changed", "completion")]),
    # The known gaps of the message-by-message aggregate (issue 10 item 1): what recomputing
    # from the timeline gives; a row still marked ``gap`` is a strict xfail until it does.
    Row("a reclassification processed before the submission still gives 60 HK",
        [(reclassified(day(1)), day(1)), (submitted(), day(1))],
        {("completion", 0, 0): "running"}, working_days={("completion", 0, 0): 60}),
    Row("a breach that fired stays emitted, but the clock follows the extended deadline",
        [(submitted(), T0), (routed(T0), T0), (SCAN, day(15)), (reclassified(day(16)), day(16))],
        {("completion", 0, 0): "running"}, events=[("sla.breached", "completion")],
        working_days={("completion", 0, 0): 60},
        breach_due={("completion", 0, 0): CALENDAR.deadline(T0, 60)}),
    Row("a resumed completion instance follows a reclassification",
        [(submitted(), T0), (routed(T0), T0), (responded(day(2)), day(2)),
         (replied(day(5)), day(5)), (reclassified(day(6)), day(6))],
        {("completion", 0, 1): "running"}, working_days={("completion", 0, 1): 60}),
    Row("a routing processed after the close starts nothing",
        [(submitted(), T0), (routed(T0), T0), (responded(day(2)), day(2)),
         (closed(day(13)), day(13)), (routed(day(13, 14), hop=2, opd="dinkes"), day(14))],
        {("opd_response", 2, 0): "absent", ("completion", 0, 0): "stopped"}),
    Row("a routing after the close processed before it: its OPD clock is deleted, no breach",
        [(submitted(), T0), (routed(T0), T0), (responded(day(2)), day(2)),
         (routed(day(13, 14), hop=2, opd="dinkes"), day(14)), (closed(day(13)), day(14))],
        {("opd_response", 2, 0): "absent", ("completion", 0, 0): "stopped"},
        events=[("sla.clock_stopped", "opd_response")],
        never=[("sla.breached", "opd_response")], scan_at=day(30)),
    Row("a reply inside the window processed after the close that elapsed it undoes it",
        [(submitted(), T0), (routed(T0), T0), (responded(day(2)), day(2)),
         (closed(day(13)), day(13)), (replied(day(5)), day(14))],
        {("auto_close", 1, 1): "cancelled", ("opd_response", 1, 1): "cancelled",
         ("completion", 0, 1): "stopped"}),
]


def _status(row: ClockRow | None) -> str:
    if row is None:
        return "absent"
    return "running" if row.stopped_at is None else str(row.stop_reason)


async def run(row: Row) -> tuple[Sla, list[CloudEvent]]:
    sla = Sla()
    for data, now in row.timeline:
        if data is SCAN:
            sla.repo.now = now
            await usecases.fire_due_timers(100, uow=sla.uow)
            continue
        out = await usecases.on_complaint_event(make_event("test", data), uow=sla.uow,
                                                calendars=sla.calendars, now=now,
                                                completion_met_by=row.met_by)
        assert out.drift == [], f"{type(data).__name__} left clocks unlike derive's"
    if row.scan_at is not None:
        sla.repo.now = row.scan_at
        await usecases.fire_due_timers(100, uow=sla.uow)
    return sla, sla.uow.committed_events


@pytest.mark.parametrize("row", [pytest.param(r, marks=pytest.mark.xfail(strict=True))
                                 if r.gap else r for r in ROWS], ids=[r.name for r in ROWS])
async def test_scenario(row: Row) -> None:
    sla, events = await run(row)
    clocks = {(c.clock, c.hop, c.instance): c for c in sla.repo.clocks.values()}
    got = {key: _status(clocks.get(key)) for key in row.expect}
    assert got == row.expect
    assert {key: clocks[key].working_days for key in row.working_days if key in clocks} \
        == row.working_days
    pending = {key: [t.due_at for t in sla.repo.timers.values() if t.pending
                     and t.kind == "breach" and t.clock_id == clocks[key].id]
               for key in row.breach_due if key in clocks}
    assert pending == {key: [due] for key, due in row.breach_due.items()}
    emitted = {(e.event_name, e.data.get("clock", "")) for e in events}
    assert set(row.events) <= emitted, sorted(emitted)
    assert not set(row.never) & emitted, sorted(emitted)


async def test_final_response_and_close_are_both_kept_on_the_completion_clock() -> None:
    sla, _ = await run(ROWS[0])
    [completion] = [c for c in sla.repo.clocks.values() if c.clock == "completion"]
    assert (completion.final_response_at, completion.closed_at) == (day(1), day(11))
    assert completion.stopped_at == day(1)


async def test_the_resumed_completion_keeps_the_remaining_working_days() -> None:
    sla, _ = await run(ROWS[5])
    first, again = sorted((c for c in sla.repo.clocks.values() if c.clock == "completion"),
                          key=lambda c: c.instance)
    window = CALENDAR.paused_working_days(day(2), day(5))
    assert again.deadline == CALENDAR.move_deadline(first.deadline, window)
    assert again.working_days == first.working_days == 14


async def test_reclassification_records_old_and_new_deadline_reason_and_who() -> None:
    sla, events = await run(next(r for r in ROWS if r.name.startswith("reclassified to")))
    [changed] = [e.data for e in events if e.event_name == "sla.deadline_changed"]
    [completion] = [c for c in sla.repo.clocks.values() if c.clock == "completion"]
    assert datetime.fromisoformat(changed["old_deadline"]) == CALENDAR.deadline(T0, 14)
    assert datetime.fromisoformat(changed["new_deadline"]) == CALENDAR.deadline(T0, 60) \
        == completion.deadline
    assert (changed["reason"], changed["note"], changed["changed_by"]) == (
        "reclassified", "Menyangkut dugaan pungli", "admin-1")
    assert (completion.policy_key, completion.working_days) == (
        "completion_pengaduan_pengawasan", 60)
    pending = [t for _, _, t in sla.repo.timers_of(CID) if t.pending and t.kind == "breach"
               and sla.repo.clocks[t.clock_id].clock == "completion"]
    assert [t.due_at for t in pending] == [completion.deadline]


async def test_a_closure_inside_the_open_window_moves_it_by_one_day_and_keep_does_not() -> None:
    """The calendar-change row of the table: recomputed against the new calendar version the
    deadline moves one working day; the operator's "keep" is not recomputing at all."""
    sla, _ = await run(Row("", [(submitted(), T0), (routed(T0), T0)], {}))
    state, _stamp = await sla.repo.load(CID, None, "")
    opd = next(c for c in sla.repo.clocks.values() if c.clock == "opd_response")
    closure = CALENDAR.nth_working_day_after(T0.date(), 2)
    changed = WorkingCalendar(CALENDAR.tz, {closure: False}, override_revision=1)
    policies = default_policies()
    assert state.recompute_deadlines(changed, policies, T0, note="Banjir", changed_by="op") >= 1
    await sla.repo.save(state)
    moved = sla.repo.clocks[opd.id]
    assert moved.deadline == CALENDAR.move_deadline(opd.deadline, 1)
    assert moved.calendar_version == changed.version
    [event] = [e.data for e in state.events if e.event_name == "sla.deadline_changed"
               and e.data["clock"] == "opd_response"]
    assert (event["reason"], event["note"], event["changed_by"]) == ("calendar_changed", "Banjir", "op")
    # Recomputing again under the same calendar moves nothing (a pure function of it).
    again, _ = await sla.repo.load(CID, None, "")
    assert again.recompute_deadlines(changed, policies, T0, note=None, changed_by=None) == 0


async def test_a_closure_moves_the_resumed_completion_instance_too() -> None:
    """A calendar change recomputes a completion instance resumed after a reporter's reply
    as well: chained from the first instance, recomputed under the new calendar."""
    sla, _ = await run(next(r for r in ROWS if r.name.startswith("a reporter's reply")))
    again = next(c for c in sla.repo.clocks.values()
                 if (c.clock, c.instance) == ("completion", 1))
    closure = CALENDAR.nth_working_day_after(T0.date(), 8)
    changed = WorkingCalendar(CALENDAR.tz, {closure: False}, override_revision=1)
    state, _stamp = await sla.repo.load(CID, None, "")
    assert state.recompute_deadlines(changed, default_policies(), day(6), note="Banjir",
                                     changed_by="op") >= 1
    await sla.repo.save(state)
    assert sla.repo.clocks[again.id].deadline == CALENDAR.move_deadline(again.deadline, 1)

"""After a fault: is everything done, once, and nothing stuck? Read from the databases
(schemas intake, routing, sla, notify), the broker and the webhook receivers.

``check`` first waits (bounded) until the system is quiet — every complaint decided, no
unsent outbox row, no queued message, no pending delivery, no due timer unfired, the
receivers' traffic stable — then asserts, for the complaints of the run:
- each accepted complaint exists once in intake and was decided exactly once by routing
  (one hop-1 decision, at most one decision event staged, intake's view agrees);
- each clock was started once (sla has one verification and one completion clock, and an
  OPD clock for a routed complaint; intake's read model has the same clocks);
- each due warning/breach fired (no due timer left unfired) and was emitted once;
- every webhook event was delivered, each (event, subscription) under one ``webhook-id``
  (repeats only with the same id), no delivery pending or dead-lettered, and the receivers
  got one distinct event per decision, clock start and alert;
- 0 messages in any DLQ of the namespace and in its work queues; 0 unsent outbox rows in
  every schema.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import aio_pika
import asyncpg

from shared.events import CloudEvent
from shared.topology import ALL_QUEUES
from tests.e2e.receiver import WebhookReceiver

SCHEMAS = ("intake", "routing", "sla", "notify")
ALERTS = {"warning": "sla.warning", "breach": "sla.breached"}


@dataclass(frozen=True)
class Sink:
    """A webhook subscription and the receiver path it points at."""

    subscription: str
    receiver: WebhookReceiver
    path: str
    event_types: tuple[str, ...]

    def spec(self, secret: str) -> dict[str, object]:
        return {"name": self.subscription, "url": self.receiver.url(self.path), "secret": secret,
                "event_types": list(self.event_types)}


@dataclass
class Report:
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    dlq_samples: list[str] = field(default_factory=list)
    quiet_after_s: float | None = None  # None: never quiet within the bound

    def problem(self, what: str, examples: list[object] | None = None) -> None:
        shown = f" e.g. {examples[:3]}" if examples else ""
        self.problems.append(f"{what}{shown}")

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        quiet = (f"quiet after {self.quiet_after_s:.1f}s" if self.quiet_after_s is not None
                 else "NOT quiet within the bound")
        lines = [f"checked ({quiet}): " + ", ".join(f"{k}={v}" for k, v in self.counts.items())]
        lines += [f"  PROBLEM: {p}" for p in self.problems]
        lines += [f"  DLQ sample: {s}" for s in self.dlq_samples]
        return "\n".join(lines)


def retry_delays_of(settings: object) -> tuple[float, ...]:
    """The delayed-retry steps of ``settings`` (none where the product has no retry queues)."""
    return tuple(getattr(getattr(settings, "retry", None), "delays_s", ()))


async def connect(database_url: str, patience_s: float = 60.0) -> asyncpg.Connection:
    """The checker's own connection, direct (no proxy). PostgreSQL is shared with other test
    runs: a moment at max_connections is waited out rather than failing the check."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return await asyncpg.connect(database_url, timeout=10)
        except (asyncpg.TooManyConnectionsError, asyncpg.CannotConnectNowError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1.0)


def _event(body: bytes) -> CloudEvent:
    return CloudEvent.model_validate(json.loads(body))


async def queue_depths(amqp_url: str, ns: str, retry_delays_s: tuple[float, ...] = ()) -> dict[str, int]:
    """Messages ready in each work queue, delayed-retry queue, DLQ and quarantine of the
    namespace (passive declares; a retry queue not declared yet counts as empty)."""
    names: list[str] = []
    for spec in ALL_QUEUES:
        names += [spec.name(ns), spec.dlq_name(ns)]
        if spec.personal_data:
            names.append(spec.quarantine_name(ns))
        retry_name = getattr(spec, "retry_name", None)  # where consumers retry with a delay
        if retry_name is not None:
            names += [retry_name(ns, d) for d in dict.fromkeys(retry_delays_s)]
    depths: dict[str, int] = {}
    conn = await aio_pika.connect(amqp_url)
    try:
        for name in names:
            try:
                async with conn.channel() as ch:
                    q = await ch.declare_queue(name, passive=True)
                    depths[name] = q.declaration_result.message_count or 0
            except aio_pika.exceptions.ChannelNotFoundEntity:
                if ".retry." not in name:
                    raise
    finally:
        await conn.close()
    return depths


async def dlq_samples(amqp_url: str, ns: str, limit: int = 3) -> list[str]:
    """A few dead-lettered messages (type, reason), put back where they were."""
    out: list[str] = []
    conn = await aio_pika.connect(amqp_url)
    try:
        ch = await conn.channel()
        for spec in ALL_QUEUES:
            q = await ch.declare_queue(spec.dlq_name(ns), passive=True)
            for _ in range(limit):
                msg = await q.get(fail=False, no_ack=False)
                if msg is None:
                    break
                headers = msg.headers or {}
                reason = headers.get("x-sp4n-error") or f"x-death={headers.get('x-death')!r:.300}"
                try:
                    what = json.loads(msg.body).get("type", "?")
                except ValueError:
                    what = "?"
                out.append(f"{spec.dlq_name(ns)}: {what}: {str(reason)[:300]}")
            await ch.close()  # unacked messages go back to their DLQ
            ch = await conn.channel()
    finally:
        await conn.close()
    return out


async def purge_dlqs(amqp_url: str, ns: str) -> int:
    """Empty the namespace's DLQs (between scenarios sharing one namespace); returns how many."""
    purged = 0
    conn = await aio_pika.connect(amqp_url)
    try:
        ch = await conn.channel()
        for spec in ALL_QUEUES:
            q = await ch.declare_queue(spec.dlq_name(ns), passive=True)
            purged += (await q.purge()).message_count or 0
    finally:
        await conn.close()
    return purged


class Checker:
    def __init__(self, database_url: str, amqp_url: str, namespace: str, sinks: list[Sink],
                 progress: Callable[[str], None] | None = None,
                 retry_delays_s: tuple[float, ...] = ()) -> None:
        self.database_url, self.amqp_url, self.ns = database_url, amqp_url, namespace
        self.sinks = sinks
        self.retry_delays_s = retry_delays_s  # the consumers' delayed-retry steps, if any
        self.progress = progress  # told what is still moving, every 10 s of waiting

    async def _ids(self, conn: asyncpg.Connection, http: dict[str, str],
                   inbound: set[str]) -> tuple[list[uuid.UUID], list[str]]:
        """The complaint ids of the run, and the external ids intake does not have."""
        wanted = list(http) + list(inbound)
        rows = await conn.fetch("SELECT external_id, id FROM intake.complaints"
                                " WHERE external_id = ANY($1)", wanted)
        found = {r["external_id"]: r["id"] for r in rows}
        missing = [e for e in wanted if e not in found]
        return list(found.values()), missing

    async def _unquiet(self, conn: asyncpg.Connection, ids: list[uuid.UUID]) -> dict[str, int]:
        """What is still moving (0 everywhere = quiet)."""
        busy: dict[str, int] = {}
        busy["undecided"] = await conn.fetchval(
            "SELECT count(*) FROM unnest($1::uuid[]) AS c(id) WHERE NOT EXISTS"
            " (SELECT 1 FROM routing.decisions d WHERE d.complaint_id = c.id AND d.hop = 1)", ids)
        for schema in SCHEMAS:
            busy[f"{schema}.outbox unsent"] = await conn.fetchval(
                f"SELECT count(*) FROM {schema}.outbox WHERE sent_at IS NULL")
        busy["deliveries pending"] = await conn.fetchval(
            "SELECT count(*) FROM notify.deliveries WHERE status = 'pending'")
        busy["timers due"] = await conn.fetchval(
            "SELECT count(*) FROM sla.timers WHERE fired_at IS NULL AND cancelled_at IS NULL"
            " AND fire_at <= now()")
        busy["intake clocks behind"] = await conn.fetchval(
            "SELECT (SELECT count(*) FROM sla.clocks WHERE complaint_id = ANY($1))"
            " - (SELECT count(*) FROM intake.clocks WHERE complaint_id = ANY($1))", ids)
        depths = await queue_depths(self.amqp_url, self.ns, self.retry_delays_s)
        busy["queued"] = sum(n for q, n in depths.items() if not q.endswith(".dlq"))
        busy["received"] = sum(len(s.receiver.requests) for s in self.sinks)
        return busy

    async def wait_quiet(self, http: dict[str, str], inbound: set[str],
                         timeout: float) -> tuple[float | None, dict[str, int]]:
        """Seconds until three consecutive polls, 1 s apart, saw nothing moving and the same
        counts (a queue's message count omits what consumers hold unacknowledged, so one
        still poll is not enough), or None after ``timeout``."""
        started = next_report = time.monotonic()
        still = 0  # consecutive polls with nothing moving and unchanged counts
        previous: dict[str, int] | None = None
        busy: dict[str, int] = {}
        conn = await connect(self.database_url)
        try:
            while time.monotonic() - started < timeout:
                ids, missing = await self._ids(conn, http, inbound)
                try:
                    busy = await self._unquiet(conn, ids) | {"not in intake": len(missing)}
                except (OSError, aio_pika.exceptions.AMQPError) as exc:
                    busy = {f"poll failed: {type(exc).__name__}": 1}
                moving = {k: v for k, v in busy.items() if v and k != "received"}
                still = still + 1 if not moving and previous == busy else 0
                if still >= 2:
                    return time.monotonic() - started, busy
                if self.progress is not None and time.monotonic() >= next_report:
                    self.progress(f"waiting {time.monotonic() - started:.0f}s: {moving or busy}")
                    next_report += 10
                previous = busy
                await asyncio.sleep(1.0)
        finally:
            await conn.close()
        return None, busy

    async def check(self, http: dict[str, str], inbound: set[str], timeout: float = 90) -> Report:
        report = Report()
        report.quiet_after_s, busy = await self.wait_quiet(http, inbound, timeout)
        if report.quiet_after_s is None:
            report.problem(f"still busy after {timeout}s: "
                           f"{ {k: v for k, v in busy.items() if v and k != 'received'} }")
        conn = await connect(self.database_url)
        try:
            await self._check_db(conn, report, http, inbound)
        finally:
            await conn.close()
        depths = await queue_depths(self.amqp_url, self.ns, self.retry_delays_s)
        dead = {q: n for q, n in depths.items() if q.endswith(".dlq") and n}
        waiting = {q: n for q, n in depths.items() if not q.endswith(".dlq") and n}
        report.counts["dead-lettered"] = sum(dead.values())
        if dead:
            report.problem(f"messages in DLQs: {dead}")
            report.dlq_samples = await dlq_samples(self.amqp_url, self.ns)
        if waiting:
            report.problem(f"messages still queued: {waiting}")
        return report

    async def _check_db(self, conn: asyncpg.Connection, report: Report, http: dict[str, str],
                        inbound: set[str]) -> None:
        ids, missing = await self._ids(conn, http, inbound)
        report.counts["complaints"] = len(http) + len(inbound)
        if missing:
            report.problem(f"{len(missing)} accepted complaints not in intake", missing)
        by_ext = {r["external_id"]: str(r["id"]) for r in await conn.fetch(
            "SELECT external_id, id FROM intake.complaints WHERE external_id = ANY($1)", list(http))}
        wrong = [e for e, cid in http.items() if e in by_ext and by_ext[e] != cid]
        if wrong:
            report.problem(f"{len(wrong)} complaints with another id than the one answered", wrong)

        # Routing: one decision each, one decision event staged, intake's view agrees.
        decisions = {r["complaint_id"]: r for r in await conn.fetch(
            "SELECT complaint_id, outcome, opd_code, event_id FROM routing.decisions"
            " WHERE complaint_id = ANY($1) AND hop = 1", ids)}
        report.counts["decided"] = len(decisions)
        undecided = [str(i) for i in ids if i not in decisions]
        if undecided:
            report.problem(f"{len(undecided)} complaints never decided by routing", undecided)
        staged = await conn.fetch(
            "SELECT payload->>'subject' AS cid, count(*) AS n FROM routing.outbox"
            " WHERE routing_key IN ('complaint.routed', 'complaint.triage_required')"
            " AND payload->>'subject' = ANY($1) AND coalesce(payload->'data'->>'hop', '1') = '1'"
            " GROUP BY 1 HAVING count(*) > 1", [str(i) for i in ids])
        if staged:
            report.problem(f"{len(staged)} complaints decided more than once (routing outbox)",
                           [(r["cid"], r["n"]) for r in staged])
        views = {r["id"]: r for r in await conn.fetch(
            "SELECT id, opd_code, needs_triage FROM intake.complaints WHERE id = ANY($1)", ids)}
        disagree = [str(c) for c, d in decisions.items()
                    if (d["outcome"] == "routed" and views[c]["opd_code"] != d["opd_code"])
                    or (d["outcome"] == "triage" and not views[c]["needs_triage"])]
        if disagree:
            report.problem(f"{len(disagree)} complaints whose decision intake does not show", disagree)

        # Clocks: started once in sla; intake's read model has the same.
        sla_clocks = Counter((r["complaint_id"], r["clock"], r["hop"], r["instance"]) for r in
                             await conn.fetch("SELECT complaint_id, clock, hop, instance FROM sla.clocks"
                                              " WHERE complaint_id = ANY($1)", ids))
        report.counts["clocks"] = len(sla_clocks)
        expected = set()
        for c in ids:
            expected |= {(c, "verification", 0, 0), (c, "completion", 0, 0)}
            if c in decisions and decisions[c]["outcome"] == "routed":
                expected.add((c, "opd_response", 1, 0))
        absent = sorted(str(k) for k in expected - set(sla_clocks))
        if absent:
            report.problem(f"{len(absent)} clocks never started", absent)
        intake_clocks = {(r["complaint_id"], r["clock"], r["hop"], r["instance"]) for r in
                         await conn.fetch("SELECT complaint_id, clock, hop, instance FROM intake.clocks"
                                          " WHERE complaint_id = ANY($1)", ids)}
        unseen = sorted(str(k) for k in set(sla_clocks) - intake_clocks)
        if unseen:
            report.problem(f"{len(unseen)} clocks missing from intake's status view", unseen)

        # Timers: every due one fired; what fired is what the receivers got, once each.
        due = await conn.fetchval(
            "SELECT count(*) FROM sla.timers t JOIN sla.clocks c ON c.id = t.clock_id"
            " WHERE c.complaint_id = ANY($1) AND t.fired_at IS NULL AND t.cancelled_at IS NULL"
            " AND t.fire_at <= now()", ids)
        if due:
            report.problem(f"{due} due timers never fired")
        fired = Counter((r["complaint_id"], r["clock"], r["hop"], r["instance"], ALERTS[r["kind"]])
                        for r in await conn.fetch(
            "SELECT c.complaint_id, c.clock, c.hop, c.instance, t.kind FROM sla.timers t"
            " JOIN sla.clocks c ON c.id = t.clock_id WHERE c.complaint_id = ANY($1)"
            " AND t.kind IN ('warning', 'breach') AND t.fired_at IS NOT NULL", ids))
        report.counts["alerts fired"] = sum(fired.values())

        await self._check_webhooks(conn, report, ids, decisions, sla_clocks, fired)

        for schema in SCHEMAS:
            unsent = await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox WHERE sent_at IS NULL")
            if unsent:
                report.problem(f"{unsent} unsent rows in {schema}.outbox")

    async def _check_webhooks(self, conn: asyncpg.Connection, report: Report, ids: list[uuid.UUID],
                              decisions: dict[uuid.UUID, asyncpg.Record],
                              clocks: Counter[tuple[object, ...]],
                              fired: Counter[tuple[object, ...]]) -> None:
        run = {str(i) for i in ids}
        rows = await conn.fetch(
            "SELECT event_id, subscription, webhook_id, status, complaint_id FROM notify.deliveries"
            " WHERE complaint_id = ANY($1) AND subscription = ANY($2)",
            ids, [s.subscription for s in self.sinks])
        report.counts["webhook deliveries"] = len(rows)
        not_delivered = [(r["subscription"], r["event_id"], r["status"]) for r in rows
                         if r["status"] != "delivered"]
        if not_delivered:
            report.problem(f"{len(not_delivered)} deliveries not delivered", not_delivered)
        webhook_of = {(r["subscription"], r["event_id"]): r["webhook_id"] for r in rows}
        facts = Facts({d: r["outcome"] for d, r in decisions.items()}, clocks, fired)
        for sink in self.sinks:
            judge_sink(report, sink, run, webhook_of, facts)


@dataclass
class Facts:
    """What happened, from the services' own tables: what the receivers should have got."""

    decisions: dict[uuid.UUID, str]  # complaint → outcome of its hop-1 decision
    clocks: Counter[tuple[object, ...]]  # (complaint, clock, hop, instance)
    fired: Counter[tuple[object, ...]]  # (complaint, clock, hop, instance, event name) → timers


def judge_sink(report: Report, sink: Sink, run: set[str], webhook_of: dict[tuple[str, str], str],
               facts: Facts) -> None:
    """One receiver's traffic for the run's complaints against notify's deliveries (one
    webhook-id per event, each answered 200) and against the facts (one distinct event each)."""
    ids_seen: dict[str, set[str]] = defaultdict(set)  # event id → webhook-ids
    ok_ids: set[str] = set()
    events: dict[str, CloudEvent] = {}
    for req in sink.receiver.to(sink.path):
        event = _event(req.body)
        if event.subject not in run:
            continue
        events[event.id] = event
        ids_seen[event.id].add(req.headers.get("webhook-id", ""))
        if req.status == 200:
            ok_ids.add(event.id)
    several = [e for e, w in ids_seen.items() if len(w) > 1]
    if several:
        report.problem(f"{sink.subscription}: {len(several)} events sent under several"
                       " webhook-ids", several)
    foreign = [e for e, w in ids_seen.items() if w != {webhook_of.get((sink.subscription, e))}]
    if foreign:
        report.problem(f"{sink.subscription}: {len(foreign)} requests whose webhook-id is not"
                       " their delivery's", foreign)
    unreceived = [e for (s, e) in webhook_of if s == sink.subscription and e not in ok_ids]
    if unreceived:
        report.problem(f"{sink.subscription}: {len(unreceived)} deliveries the receiver never"
                       " answered 200", unreceived)
    report.counts[f"events at {sink.subscription}"] = len(events)
    compare(report, sink, events, facts)


def compare(report: Report, sink: Sink, events: dict[str, CloudEvent], facts: Facts) -> None:
    """One distinct event per fact at the receiver: a decision, a clock start, an alert."""
    got: Counter[tuple[object, ...]] = Counter()
    for e in events.values():
        cid = uuid.UUID(e.subject or "")
        if e.event_name in ("complaint.routed", "complaint.triage_required"):
            if e.data.get("hop", 1) == 1:
                got[(cid, "decision")] += 1
        elif e.event_name == "sla.clock_started":
            got[(cid, e.data["clock"], e.data.get("hop", 0), e.data.get("instance", 0))] += 1
        elif e.event_name in ALERTS.values():
            got[(cid, e.data["clock"], e.data.get("hop", 0), e.data.get("instance", 0),
                 e.event_name)] += 1
    want: Counter[tuple[object, ...]] = Counter()
    kinds = set(sink.event_types)
    if kinds & {"complaint.routed", "complaint.triage_required"}:
        want.update({(c, "decision"): 1 for c, outcome in facts.decisions.items()
                     if ("complaint.routed" if outcome == "routed"
                         else "complaint.triage_required") in kinds})
    if "sla.clock_started" in kinds:
        want.update({k: 1 for k in facts.clocks})
    want.update({k: n for k, n in facts.fired.items() if k[-1] in kinds})
    extra = [(str(k), n) for k, n in got.items() if n > want.get(k, 0)]
    lacking = [(str(k), n) for k, n in want.items() if got.get(k, 0) < n]
    if extra:
        report.problem(f"{sink.subscription}: {len(extra)} facts delivered as more distinct events"
                       " than happened (acted twice)", extra)
    if lacking:
        report.problem(f"{sink.subscription}: {len(lacking)} facts never delivered", lacking)

"""Complaints at a steady rate while faults happen, as a portal would send them.

HTTP submissions alternate between the intake replicas' URLs; an answer that says "try
again" (503, 429, a connection error or a timeout) is retried on the next URL with the same
``source`` + ``external_id`` (intake answers a repeat with the same ids), so every complaint
is eventually accepted once the system is back. Any other 5xx is recorded as a failure
(the product must never answer 500) and retried all the same. Some complaints arrive over
AMQP instead (the inbound exchange, with publisher confirms): they are accepted once
published.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aio_pika
import httpx

from shared.topology import SUBMISSION_ROUTING_KEY, inbound_exchange

# (category, kecamatan): routed by the seed rules, except pertanahan (no rule → triage).
ROUTED = [("infrastruktur_jalan", "Belitang Hilir"), ("kesehatan", "Nanga Taman"),
          ("pendidikan", "Sekadau Hilir"), ("administrasi_kependudukan", "Belitang")]
TRIAGE = ("pertanahan", "Sekadau Hulu")
RETRYABLE = {429, 502, 503, 504}


def complaint(i: int, source: str, now: datetime | None = None) -> dict:
    """Complaint ``i`` of a run: every 10th goes to triage, every 5th is backdated 40 days
    (its verification and completion clocks breach at once, so breaches are part of the flow)."""
    now = now or datetime.now(UTC)
    category, kecamatan = TRIAGE if i % 10 == 9 else ROUTED[i % len(ROUTED)]
    received = now - timedelta(days=40) if i % 5 == 2 else now
    return {
        "source": source, "external_id": f"fault-{uuid.uuid4().hex}",
        "received_at": received.isoformat(), "classification": "pengaduan",
        "category": category, "title": f"Laporan uji gangguan nomor {i}",
        "description": "Laporan uji ketahanan sp4n saat basis data atau broker terganggu.",
        "location": {"kecamatan": kecamatan, "desa": f"Desa Uji {random.randrange(1000)}"},
        "anonymous": True,
    }


@dataclass
class LoadResult:
    accepted: dict[str, str] = field(default_factory=dict)  # external_id → complaint_id (HTTP)
    inbound: set[str] = field(default_factory=set)  # external_ids published over AMQP, confirmed
    statuses: Counter[str] = field(default_factory=Counter)  # every answer/error seen
    failures: list[str] = field(default_factory=list)  # 500s, unexpected 4xx, given-up submits
    slow: list[float] = field(default_factory=list)  # answers that took longer than 10 s

    def merge(self, other: LoadResult) -> None:
        self.accepted |= other.accepted
        self.inbound |= other.inbound
        self.statuses += other.statuses
        self.failures += other.failures
        self.slow += other.slow

    @property
    def total(self) -> int:
        return len(self.accepted) + len(self.inbound)


class Load:
    def __init__(self, urls: list[str], api_key: str, amqp_url: str, namespace: str, *,
                 source: str, inbound_source: str | None = None, inbound_every: int = 5,
                 give_up_after_s: float = 120.0, max_in_flight: int = 64) -> None:
        self._urls = itertools.cycle(urls)
        self._key = api_key
        self._amqp_url, self._ns = amqp_url, namespace
        self._source, self._inbound_source = source, inbound_source
        self._inbound_every = inbound_every
        self._give_up_after_s = give_up_after_s
        # At most this many HTTP requests in flight, as a portal's worker pool would send them:
        # httpx queues the rest in its connection pool, whose bookkeeping is quadratic in the
        # queue's length — a backlog left by an outage (thousands of waiting submits) would
        # make the load generator itself the bottleneck (one core at 100 %) and never recover.
        self._slots = asyncio.Semaphore(max_in_flight)
        self._counter = itertools.count()
        self._stopping = False
        self.result = LoadResult()

    def stop(self) -> None:
        """Start no further complaints; ``run`` returns once the started ones are settled."""
        self._stopping = True

    async def run(self, rate: float, seconds: float | None = None, count: int | None = None) -> LoadResult:
        """Start complaints at ``rate`` per second for ``seconds``, until ``count`` or until
        ``stop()``, then wait until each one is accepted or given up."""
        started, tasks = time.monotonic(), []
        amqp = await aio_pika.connect_robust(self._amqp_url) if self._inbound_source else None
        try:
            channel = await amqp.channel(publisher_confirms=True) if amqp else None
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {self._key}"},
                                         timeout=httpx.Timeout(15.0, connect=3.0),
                                         limits=httpx.Limits(max_connections=64)) as client:
                for n in itertools.count():
                    if self._stopping or (count is not None and n >= count):
                        break
                    if seconds is not None and time.monotonic() - started >= seconds:
                        break
                    i = next(self._counter)
                    if channel is not None and i % self._inbound_every == self._inbound_every - 1:
                        tasks.append(asyncio.create_task(self._publish(channel, i)))
                    else:
                        tasks.append(asyncio.create_task(self._submit(client, i)))
                    await asyncio.sleep(max(0.0, started + (n + 1) / rate - time.monotonic()))
                await asyncio.gather(*tasks)
        finally:
            if amqp is not None:
                await amqp.close()
        return self.result

    async def _submit(self, client: httpx.AsyncClient, i: int) -> None:
        body = complaint(i, self._source)
        deadline: float | None = None  # from the first attempt, not from the wait for a slot
        while deadline is None or time.monotonic() < deadline:
            url = next(self._urls)
            try:
                async with self._slots:
                    t0 = time.monotonic()
                    deadline = deadline or t0 + self._give_up_after_s
                    r = await client.post(f"{url}/v1/complaints", json=body)
            except httpx.TransportError as exc:  # refused, reset, timed out: the replica is away
                self.result.statuses[type(exc).__name__] += 1
                await asyncio.sleep(0.5)
                continue
            if time.monotonic() - t0 > 10:
                self.result.slow.append(time.monotonic() - t0)
            self.result.statuses[str(r.status_code)] += 1
            if r.status_code in (200, 202):
                self.result.accepted[body["external_id"]] = r.json()["complaint_id"]
                return
            if r.status_code not in RETRYABLE:
                self.result.failures.append(f"{r.status_code} {r.headers.get('content-type')}: "
                                            f"{r.text[:200]}")
                if r.status_code < 500:
                    return
            await asyncio.sleep(0.5)
        self.result.failures.append(f"complaint {i} not accepted within {self._give_up_after_s}s")

    async def _publish(self, channel: aio_pika.abc.AbstractChannel, i: int) -> None:
        body = complaint(i, self._inbound_source or self._source)
        deadline = time.monotonic() + self._give_up_after_s
        while time.monotonic() < deadline:
            try:
                exchange = await channel.get_exchange(inbound_exchange(self._ns).name, ensure=False)
                await exchange.publish(
                    aio_pika.Message(json.dumps(body).encode(), content_type="application/json",
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=SUBMISSION_ROUTING_KEY, mandatory=True, timeout=10)
                self.result.inbound.add(body["external_id"])
                self.result.statuses["amqp-confirmed"] += 1
                return
            except Exception as exc:  # noqa: BLE001 - a portal retries a publish that was not confirmed
                self.result.statuses[f"amqp-{type(exc).__name__}"] += 1
                await asyncio.sleep(0.5)
        self.result.failures.append(f"inbound complaint {i} not confirmed within {self._give_up_after_s}s")


async def warm_up(urls: list[str], api_key: str, receivers: list, timeout: float = 90.0) -> int:
    """Wait until the whole pipeline is live, webhooks included: notify binds the on-demand
    events (clock starts, …) a few seconds after its subscriptions are synced, so events of
    complaints accepted before that are, by design, not delivered. Submits a probe complaint
    every few seconds until one's ``sla.clock_started`` reaches a receiver; returns how many
    probes it took. Probes are not part of any run's checked complaints."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {api_key}"}, timeout=10) as client:
        for probe in itertools.count(1):
            r = await client.post(f"{urls[probe % len(urls)]}/v1/complaints",
                                  json=complaint(probe, "portal-sekadau"))
            cid = r.json()["complaint_id"] if r.status_code in (200, 202) else None
            for _ in range(30):
                if cid and any(json.loads(req.body).get("subject") == cid
                               and json.loads(req.body).get("type", "").endswith("sla.clock_started.v1")
                               for receiver in receivers for req in receiver.requests):
                    return probe
                await asyncio.sleep(0.1)
            if time.monotonic() > deadline:
                raise RuntimeError(f"no clock start of a probe complaint reached a webhook receiver "
                                   f"within {timeout}s")
    raise AssertionError("unreachable")

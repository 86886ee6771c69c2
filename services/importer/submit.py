"""Posting submissions to intake's ``POST /v1/complaints``: the same path every portal uses.

Concurrency is bounded (a fixed set of workers). A connection error, a timeout or a 5xx is
retried with exponential backoff and jitter, a bounded number of times: safe because intake
is idempotent on (source, external_id) — a retry of a request whose answer was lost gets
200 and the same ids, never a second complaint. A 4xx is the row's final answer, never
retried; 401/403/404/405 stop the whole run, since every other row would get the same.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

Kind = Literal["imported", "present", "rejected", "failed", "valid"]  # valid: dry run only
COMPLAINTS_PATH = "/v1/complaints"
FATAL_STATUSES = {401: "API key tidak dikenal, dicabut, atau kedaluwarsa",
                  403: ("API key bukan kunci importer untuk source 'lapor' (buat dengan "
                        "sp4n create-api-key --role importer --source lapor)"),
                  404: "alamat intake salah: POST /v1/complaints tidak ada",
                  405: "alamat intake salah: POST /v1/complaints tidak diterima"}


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # in total, the first try included
    base_delay_s: float = 0.5
    max_delay_s: float = 10.0

    def delay(self, failed_attempts: int, retry_after: float | None = None) -> float:
        backoff = min(self.max_delay_s, self.base_delay_s * 2.0 ** (failed_attempts - 1))
        jittered = backoff * random.uniform(0.5, 1.0)  # spread a burst of retries
        if retry_after is not None:
            return min(max(jittered, retry_after), self.max_delay_s * 3)
        return jittered


@dataclass(frozen=True)
class Outcome:
    row_number: int
    external_id: str
    kind: Kind
    detail: str = ""  # the reason for rejected/failed; the sp4n tracking id otherwise
    attempts: int = 1


class ImportAborted(Exception):
    """Intake refused the key or the address: no row can be imported."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


@dataclass(frozen=True)
class Job:
    row_number: int
    external_id: str
    body: dict[str, Any]


async def submit_all(client: httpx.AsyncClient, jobs: Sequence[Job], *, concurrency: int = 8,
                     retry: RetryPolicy = RetryPolicy(), give_up_after: int = 20,
                     on_done: Callable[[Outcome], None] = lambda _o: None) -> list[Outcome]:
    """Every job's outcome, in the jobs' order.

    After ``give_up_after`` rows in a row have failed despite retries, intake is taken to
    be down: the remaining rows are reported failed without being tried (a re-run later is
    safe). Raises ``ImportAborted`` on 401/403/404/405 after letting requests already in
    flight finish.
    """
    queue: asyncio.Queue[tuple[int, Job]] = asyncio.Queue()
    for pair in enumerate(jobs):
        queue.put_nowait(pair)
    outcomes: list[Outcome | None] = [None] * len(jobs)
    aborted: list[ImportAborted] = []
    consecutive_failures = 0

    async def worker() -> None:
        nonlocal consecutive_failures
        while not aborted and consecutive_failures < give_up_after:
            try:
                index, job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                outcome = await submit_one(client, job, retry)
            except ImportAborted as exc:
                aborted.append(exc)
                return
            consecutive_failures = consecutive_failures + 1 if outcome.kind == "failed" else 0
            outcomes[index] = outcome
            on_done(outcome)

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(jobs))))))
    if aborted:
        raise aborted[0]
    for index, job in enumerate(jobs):
        if outcomes[index] is None:
            untried = Outcome(job.row_number, job.external_id, "failed", (
                f"tidak dicoba: {consecutive_failures} baris berturut-turut gagal, intake "
                f"tampaknya tidak dapat dihubungi"), attempts=0)
            outcomes[index] = untried
            on_done(untried)
    return [o for o in outcomes if o is not None]


async def submit_one(client: httpx.AsyncClient, job: Job, retry: RetryPolicy) -> Outcome:
    last_problem = ""
    for attempt in range(1, retry.attempts + 1):
        retry_after = None
        try:
            response = await client.post(COMPLAINTS_PATH, json=job.body)
        except httpx.TransportError as exc:  # connect/read/write errors and timeouts
            last_problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            status = response.status_code
            if status == 202:
                return Outcome(job.row_number, job.external_id, "imported", _tracking(response), attempt)
            if status == 200:
                return Outcome(job.row_number, job.external_id, "present", _tracking(response), attempt)
            if status in FATAL_STATUSES:
                raise ImportAborted(status, f"{FATAL_STATUSES[status]} ({_short(response)})")
            if status < 500:
                return Outcome(job.row_number, job.external_id, "rejected", rejection_reason(response),
                               attempt)
            last_problem = f"HTTP {status}: {_short(response)}"
            retry_after = _retry_after(response)
        if attempt < retry.attempts:
            await asyncio.sleep(retry.delay(attempt, retry_after))
    return Outcome(job.row_number, job.external_id, "failed",
                   f"{last_problem} (setelah {retry.attempts} percobaan)", retry.attempts)


def rejection_reason(response: httpx.Response) -> str:
    """Intake's answer as one line: 'description: String should have at least 10 characters'."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {_short(response)}"
    if isinstance(body, dict) and isinstance(body.get("errors"), list):  # 422
        return "; ".join(f"{e.get('field', '?')}: {e.get('reason', 'invalid')}" for e in body["errors"])
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str) and "type" in body:  # a Problem (RFC 9457): members at top level
        detail = {**body, "message": detail}
    if isinstance(detail, dict):
        if response.status_code == 409:
            fields = ", ".join(detail.get("conflicting_fields") or ()) or "?"
            return (f"sudah diimpor sebagai {detail.get('tracking_id', '?')} dengan isi berbeda "
                    f"(kolom berbeda: {fields})")
        return detail.get("message") or str(detail)
    return f"HTTP {response.status_code}: {_short(response)}"


def _tracking(response: httpx.Response) -> str:
    try:
        return str(response.json().get("tracking_id", ""))
    except (ValueError, AttributeError):
        return ""


def _short(response: httpx.Response) -> str:
    return " ".join(response.text.split())[:200]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None

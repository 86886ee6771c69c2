"""Reporter data at rest and on the failure path (issue 8, privacy): each test plays the
attack or the request and asserts nothing leaked, over real HTTP (intake in process),
PostgreSQL and RabbitMQ.

- A database reader (a backup, a compromised role) finds no plaintext NIK, phone, e-mail or
  name in any of intake's tables.
- An erased reporter's ciphertext no longer decrypts (its data key is gone) while the
  complaint's history stays.
- A failed AMQP submission leaves no identity in the DLQ (body and headers) nor in the log;
  intake keeps it encrypted for repair. So does one the broker dead-letters itself (past
  the delivery limit), and replaying its reference submits it.
- An OPD's access to the reporter's contact ends N days after SELESAI.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import shutil
import uuid
from datetime import UTC, datetime, timedelta

import aio_pika
import asyncpg
import httpx
import pytest

from services.cli import main as sp4n_main
from services.intake import privacy
from services.intake.apikeys import create_api_key
from services.intake.app import MIGRATIONS, build_app
from services.intake.crypto import Keyring, Undecryptable, WrappedKey, decode_master_key, keyring_from
from services.intake.domain.model import SealedReporter
from services.intake.reporter_data import open_reporter
from shared.broker import declare_topology
from shared.db import migrate
from shared.settings import IntakeSettings, Settings
from shared.topology import (
    INTAKE_SUBMISSIONS,
    SUBMISSION_ROUTING_KEY,
    dead_letter_exchange,
    inbound_exchange,
)
from tests.e2e.system import settings_env
from tests.infra import delete_namespace, message_count, next_message

pytestmark = pytest.mark.integration


def identity() -> dict[str, str]:
    """A reporter no other test uses (so a search for it finds only this test's rows)."""
    n = random.randrange(10**9)
    return {"name": f"Warga Uji{n:09d}", "phone": f"+62812{n:09d}",
            "email": f"warga{n:09d}@example.id", "nik": f"6109{n:012d}"}


def needles(who: dict[str, str]) -> list[str]:
    return [who["name"], who["phone"], who["phone"].lstrip("+"), who["email"], who["nik"]]


def body(who: dict[str, str] | None, **over: object) -> dict:
    b = {
        "source": "portal-sekadau", "external_id": f"pv-{uuid.uuid4().hex[:10]}",
        "received_at": (datetime.now(UTC) - timedelta(days=2)).isoformat(),
        "classification": "pengaduan", "category": "kesehatan",
        "title": "Puskesmas tutup pada jam layanan",
        "description": "Puskesmas tidak buka pukul 08.00 sesuai jadwal; warga menunggu lama.",
        "location": {"kecamatan": "Nanga Taman", "desa": "Nanga Taman"},
        "reporter": who,
    }
    b.update(over)
    return b


@pytest.fixture(scope="module")
async def intake(settings):
    app = build_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://intake") as client:
        yield app, client


@pytest.fixture(scope="module")
async def keys(settings, intake):
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
    try:
        out = {}
        for name, role, source, opd in (("portal", "portal", "portal-sekadau", None),
                                        ("admin", "admin_koordinator", None, None),
                                        ("dinkes", "opd", None, "dinkes")):
            _, out[name] = await create_api_key(conn, f"pv-{name}", role, source, opd)
    finally:
        await conn.close()
    return {k: {"Authorization": f"Bearer {v}"} for k, v in out.items()}


@pytest.fixture
async def db(settings):
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "intake"})
    yield conn
    await conn.close()


def run_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            *argv: str) -> tuple[int, str]:
    for key, value in settings_env(settings).items():
        if key.startswith("SP4N_"):
            monkeypatch.setenv(key, value)
    code = sp4n_main(list(argv))
    return code, capsys.readouterr().out


async def submit(client, keys, who, **over) -> dict:
    r = await client.post("/v1/complaints", json=body(who, **over), headers=keys["portal"])
    assert r.status_code == 202, r.text
    return r.json()


async def act(client, keys, who: str, cid: str, action: str, **payload) -> dict:
    defaults = {"dispose": {"opd_code": "dinkes", "opd_name": "Dinas Kesehatan"},
                "respond": {"body": "Puskesmas sudah ditegur dan jadwal diperbaiki."},
                "reopen": {"reason": "Belum beres"}}
    r = await client.post(f"/v1/complaints/{cid}/{action}", json={**defaults.get(action, {}), **payload},
                          headers=keys[who])
    assert r.status_code == 200, r.text
    return r.json()


async def detail(client, keys, who: str, cid: str) -> dict:
    r = await client.get(f"/v1/complaints/{cid}", headers=keys[who])
    assert r.status_code == 200, r.text
    return r.json()


async def plaintext_anywhere(db: asyncpg.Connection, values: list[str]) -> list[str]:
    """``table: value`` for every value found in any row of any table of intake's schema
    (text, jsonb and bytea columns alike: each row as its text form, bytea as hex and as
    escaped text)."""
    tables = [r["tablename"] for r in await db.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'intake'")]
    found = []
    for table in tables:
        text = " ".join(r["t"] for r in await db.fetch(f'SELECT t::text AS t FROM intake."{table}" t'))
        hexed = text.lower()
        for v in values:
            if v in text or v.encode().hex() in hexed:
                found.append(f"{table}: {v}")
    return found


# --- encryption at rest ------------------------------------------------------------------

async def test_no_table_of_intake_holds_a_reporters_identity_in_plain_text(intake, keys, db):
    _, client = intake
    who = identity()
    accepted = await submit(client, keys, who)
    cid = uuid.UUID(accepted["complaint_id"])
    row = await db.fetchrow("SELECT * FROM reporters WHERE complaint_id = $1", cid)
    assert not {"name", "phone", "email", "nik"} & set(row.keys())  # the plaintext columns are gone
    assert all(row[f"{f}_ct"] for f in ("name", "phone", "email", "nik"))
    assert await plaintext_anywhere(db, needles(who)) == []
    # The people who handle it still read it, decrypted, on the API.
    shown = (await detail(client, keys, "admin", str(cid)))["reporter"]
    assert shown == {"name": who["name"], "phone": who["phone"], "email": who["email"], "nik": who["nik"]}


async def test_the_same_reporter_is_still_linked_by_its_pseudonym_not_by_plaintext(intake, keys, db):
    _, client = intake
    who = identity()
    a = await submit(client, keys, who)
    b = await submit(client, keys, who)
    refs = await db.fetch("SELECT reporter_ref FROM complaints WHERE id = ANY($1::uuid[])",
                          [uuid.UUID(a["complaint_id"]), uuid.UUID(b["complaint_id"])])
    assert len({r["reporter_ref"] for r in refs}) == 1 and refs[0]["reporter_ref"].startswith("rep_")
    # An idempotent retry (same body, same identity) is still recognised as one.
    again = body(who, external_id="pv-retry-" + uuid.uuid4().hex[:6])
    first = await client.post("/v1/complaints", json=again, headers=keys["portal"])
    retry = await client.post("/v1/complaints", json=again, headers=keys["portal"])
    assert first.status_code == 202 and retry.status_code == 200
    assert retry.json()["complaint_id"] == first.json()["complaint_id"]


# --- crypto-shredding --------------------------------------------------------------------

async def history_of(db: asyncpg.Connection, cid: uuid.UUID) -> dict:
    return {
        "timeline": [tuple(r) for r in await db.fetch(
            "SELECT event_id, event_type, occurred_at, summary, data::text FROM timeline"
            " WHERE complaint_id = $1 ORDER BY id", cid)],
        "events": [tuple(r) for r in await db.fetch(
            "SELECT event_id, routing_key, payload::text FROM outbox"
            " WHERE payload->>'subject' = $1 ORDER BY event_id", str(cid))],
        "complaint": tuple(await db.fetchrow(
            "SELECT status, hop, opd_code, closed_at, received_at, classification FROM complaints"
            " WHERE id = $1", cid)),
        "clocks": [tuple(r) for r in await db.fetch(
            "SELECT clock, hop, instance, deadline FROM clocks WHERE complaint_id = $1"
            " ORDER BY clock, hop, instance", cid)],
    }


async def test_an_erased_reporter_no_longer_decrypts_and_the_history_stays(intake, keys, db):
    app, client = intake
    keyring = app.state.intake.cfg.keyring
    who = identity()
    cid = uuid.UUID((await submit(client, keys, who))["complaint_id"])
    await act(client, keys, "admin", str(cid), "dispose")
    await act(client, keys, "dinkes", str(cid), "respond")
    before = await history_of(db, cid)
    sealed = await db.fetchrow("SELECT * FROM reporters WHERE complaint_id = $1", cid)
    stored = SealedReporter(name=sealed["name_ct"], phone=sealed["phone_ct"], email=sealed["email_ct"],
                            nik=sealed["nik_ct"])
    wrapped = await db.fetchrow("SELECT key_id, wrapped_key FROM reporter_keys WHERE complaint_id = $1", cid)
    keyed = dataclasses.replace(stored, key_id=wrapped["key_id"], wrapped_key=wrapped["wrapped_key"])
    assert open_reporter(keyring, cid, keyed).nik == who["nik"]

    # Only the admin koordinator erases.
    for who_may_not in ("portal", "dinkes"):
        r = await client.post(f"/v1/reporters/{cid}/erase", headers=keys[who_may_not])
        assert r.status_code == 403, r.text
    missing = await client.post("/v1/reporters/SKD-000000-NOPE00/erase", headers=keys["admin"])
    assert missing.status_code == 404 and missing.json()["field"] == "key"
    for bad in ("a%00b", "x" * 81, "a%20b"):
        r = await client.post(f"/v1/reporters/{bad}/erase", headers=keys["admin"])
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "key", r.text
    tracking = await db.fetchval("SELECT tracking_id FROM complaints WHERE id = $1", cid)
    r = await client.post(f"/v1/reporters/{tracking}/erase", headers=keys["admin"])
    assert r.status_code == 200, r.text
    assert r.json() == {"erased": [{"complaint_id": str(cid), "tracking_id": tracking}]}
    audited = await db.fetch("SELECT role, request_id FROM audit_log"
                             " WHERE complaint_id = $1 AND action = 'erase_identity'", cid)
    assert [a["role"] for a in audited] == ["admin_koordinator"]
    assert audited[0]["request_id"] == r.headers["x-request-id"]

    # The ciphertext is still there, the data key is not: nothing opens it any more, not the
    # master key, not any data key that is left.
    after = await db.fetchrow("SELECT * FROM reporters WHERE complaint_id = $1", cid)
    assert after["nik_ct"] == sealed["nik_ct"] and after["erased_at"] is not None
    assert await db.fetchval("SELECT count(*) FROM reporter_keys WHERE complaint_id = $1", cid) == 0
    with pytest.raises(Undecryptable):
        open_reporter(keyring, cid, stored)
    for k in await db.fetch("SELECT complaint_id, key_id, wrapped_key FROM reporter_keys LIMIT 50"):
        with pytest.raises(Undecryptable):
            open_reporter(keyring, cid, dataclasses.replace(stored, key_id=k["key_id"],
                                                            wrapped_key=k["wrapped_key"]))
    # The history is intact; reads show the identity as erased, to everyone.
    assert await history_of(db, cid) == before
    for reader in ("admin", "dinkes"):
        shown = await detail(client, keys, reader, str(cid))
        assert "reporter" not in shown and shown["reporter_withheld"] == "erased"
        assert shown["status"] == "DITINDAKLANJUTI" and len(shown["timeline"]) == len(before["timeline"])
    assert await plaintext_anywhere(db, needles(who)) == []
    # The lifecycle goes on without the identity.
    assert (await act(client, keys, "admin", str(cid), "close"))["status"] == "SELESAI"
    again = await client.post(f"/v1/reporters/{cid}/erase", headers=keys["admin"])
    assert again.status_code == 200  # idempotent


async def test_erasing_by_reporter_reference_erases_every_complaint_of_that_reporter(
        intake, keys, db, settings, monkeypatch, capsys):
    _, client = intake
    who, other = identity(), identity()
    mine = [uuid.UUID((await submit(client, keys, who))["complaint_id"]) for _ in range(2)]
    theirs = uuid.UUID((await submit(client, keys, other))["complaint_id"])
    ref = await db.fetchval("SELECT reporter_ref FROM complaints WHERE id = $1", mine[0])
    code, out = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "erase-reporter", ref)
    assert code == 0 and out.count("identitas pelapor dihapus") == 2
    assert await db.fetchval("SELECT count(*) FROM reporter_keys WHERE complaint_id = ANY($1::uuid[])",
                             mine) == 0
    # The pseudonym that linked them is gone too; the other reporter is untouched.
    assert await db.fetchval("SELECT count(*) FROM complaints WHERE reporter_ref = $1", ref) == 0
    assert (await detail(client, keys, "admin", str(theirs)))["reporter"]["nik"] == other["nik"]
    code, _ = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "erase-reporter", ref)
    assert code == 1  # no complaint carries that reference any more


# --- failed inbound submissions ------------------------------------------------------------

async def test_a_failed_amqp_submission_leaves_no_identity_in_the_dlq_nor_the_log(
        intake, settings, db, monkeypatch, capsys, caplog):
    app, _ = intake
    who = identity()
    bad = body(who, source="wa-bot", description="pendek")  # too short: invalid
    raw = json.dumps(bad).encode()
    caplog.set_level(logging.DEBUG)
    amqp = await aio_pika.connect(settings.amqp_url)
    try:
        ch = await amqp.channel()
        dlq = await ch.declare_queue(INTAKE_SUBMISSIONS.dlq_name(settings.namespace), durable=True)
        await dlq.purge()
        await app.state.runtime.broker.publish(
            raw, exchange=inbound_exchange(settings.namespace), routing_key=SUBMISSION_ROUTING_KEY,
            persist=True, content_type="application/json", message_id="pv-msg-1",
            headers={"x-portal-reporter-nik": who["nik"]})  # a portal's header: not copied either
        msg = await next_message(dlq, timeout=10)
        assert msg is not None
        await msg.nack(requeue=True)  # left for the operator's view below
        await asyncio.sleep(0.2)
        code, shown = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys, "dlq", "show",
                                              INTAKE_SUBMISSIONS.dlq_name(settings.namespace))
        assert code == 0 and "failed_submission_id" in shown
        assert not any(v in shown for v in needles(who))
        await dlq.purge()
    finally:
        await amqp.close()
    everything = msg.body.decode() + json.dumps({k: str(v) for k, v in (msg.headers or {}).items()})
    for v in needles(who) + [bad["external_id"], bad["title"]]:
        assert v not in everything
    ref = json.loads(msg.body)
    assert set(ref) == {"failed_submission_id", "reason"} and "description" in ref["reason"]
    assert set(msg.headers) == {"x-sp4n-error", "x-sp4n-original-queue"}
    assert msg.message_id == "pv-msg-1"
    # Every log line of the path (intake, FastStream, the broker wrapper, the AMQP client) at
    # DEBUG, but the client's record of this test's own publish (the portal's side, with the
    # routing key portals publish on). Services keep aiormq's frame dump off anyway
    # (``shared.logs.configure_logging``).
    messages = [(r.name, r.getMessage() + " " + str(r.exc_info or "")) for r in caplog.records]
    logged = "\n".join(m for name, m in messages
                       if not (name.startswith(("aiormq", "aio_pika")) and SUBMISSION_ROUTING_KEY in m))
    assert "dead-lettered" in logged
    for v in needles(who):
        assert v not in logged, f"{v} in the log"

    # intake keeps it, encrypted, with its reason and the source the body names.
    failed_id = uuid.UUID(ref["failed_submission_id"])
    row = await db.fetchrow("SELECT * FROM failed_submissions WHERE id = $1", failed_id)
    assert row["reason"] == ref["reason"] and row["source"] == "wa-bot"
    assert raw not in row["body"] and who["nik"].encode() not in row["body"]
    assert await plaintext_anywhere(db, needles(who)) == []
    # The admin decrypts it for repair; the operator's DLQ view shows only the reference.
    code, out = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys,
                                        "failed-submissions", "show", str(failed_id))
    assert code == 0 and json.loads(out) == bad
    code, out = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys,
                                        "failed-submissions", "list")
    assert code == 0 and str(failed_id) in out and who["nik"] not in out
    # Purged after the retention period.
    await db.execute("UPDATE failed_submissions SET received_at = now() - interval '31 days'"
                     " WHERE id = $1", failed_id)
    code, out = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys,
                                        "failed-submissions", "purge")
    assert code == 0 and await db.fetchval("SELECT count(*) FROM failed_submissions WHERE id = $1",
                                           failed_id) == 0
    code, _ = await asyncio.to_thread(run_cli, settings, monkeypatch, capsys,
                                      "failed-submissions", "show", str(failed_id))
    assert code == 1


async def test_a_dlq_reference_a_portal_sends_goes_back_to_the_dlq_as_a_bare_reference(
        intake, settings, db):
    app, _ = intake
    who = identity()
    failed_id = uuid.uuid4()
    # A portal's own "reference", with more in it than intake would ever put there.
    forged = json.dumps({"failed_submission_id": str(failed_id), "reason": who["nik"],
                         "reporter": who}).encode()
    before = await db.fetchval("SELECT count(*) FROM failed_submissions")
    amqp = await aio_pika.connect(settings.amqp_url)
    try:
        ch = await amqp.channel()
        dlq = await ch.declare_queue(INTAKE_SUBMISSIONS.dlq_name(settings.namespace), durable=True)
        await dlq.purge()
        await app.state.runtime.broker.publish(
            forged, exchange=inbound_exchange(settings.namespace),
            routing_key=SUBMISSION_ROUTING_KEY, persist=True, content_type="application/json")
        msg = await next_message(dlq, timeout=10)
        assert msg is not None
        await msg.ack()
    finally:
        await amqp.close()
    # Not resubmitted (a portal may not resubmit another's), not stored again; only the id
    # is taken from the body.
    assert json.loads(msg.body) == {"failed_submission_id": str(failed_id),
                                    "reason": msg.headers["x-sp4n-error"]}
    assert "not a submission" in msg.headers["x-sp4n-error"]
    assert not any(v in msg.body.decode() for v in needles(who))
    assert await db.fetchval("SELECT count(*) FROM failed_submissions") == before


async def test_a_submission_past_the_delivery_limit_reaches_no_dlq_with_its_identity_and_replays(
        settings, db, monkeypatch, capsys):
    """The broker's own dead-lettering (a consumer that crashed on the message until the
    delivery limit) carries the original body: it goes to intake's quarantine, which seals it
    into failed_submissions; the DLQ gets a reference, and replaying it submits the complaint."""
    # A namespace of its own: queue arguments (the delivery limit) are fixed at declaration.
    # The queues get a delivery limit of 1 (intake, declaring the topology again later, keeps
    # them as they are); the settings keep theirs, which the refresh rule must stay below.
    s = settings.model_copy(update={"namespace": f"{settings.namespace}-dl"})
    ns = s.namespace
    who = identity()
    good = body(who)
    raw = json.dumps(good).encode()
    amqp = await aio_pika.connect(s.amqp_url)
    try:
        ch = await amqp.channel()
        # The DLQ bound as it was before the quarantine existed (by the queue's own name):
        # the topology's declaration moves that binding.
        dlx = await ch.declare_exchange(dead_letter_exchange(ns).name,
                                        aio_pika.ExchangeType.DIRECT, durable=True)
        old_dlq = await ch.declare_queue(INTAKE_SUBMISSIONS.dlq_name(ns), durable=True)
        await old_dlq.bind(dlx, routing_key=INTAKE_SUBMISSIONS.name(ns))
        await declare_topology(ch, ns, 1)
        inbound = await ch.get_exchange(inbound_exchange(ns).name)
        await inbound.publish(aio_pika.Message(
            raw, message_id="pv-crash-1", content_type="application/json",
            headers={"x-portal-reporter-nik": who["nik"]},
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=SUBMISSION_ROUTING_KEY)
        # A consumer that crashes holding the message: its channel goes away unacked, again
        # and again, until the broker dead-letters it (intake is not running yet).
        quarantine_name = INTAKE_SUBMISSIONS.quarantine_name(ns)
        for _ in range(10):
            crashing = await amqp.channel()
            queue = await crashing.declare_queue(INTAKE_SUBMISSIONS.name(ns), passive=True)
            msg = await next_message(queue, timeout=2)
            await crashing.close()
            if msg is None:
                break
        assert await message_count(ch, quarantine_name, 1, timeout=20) == 1
        assert await message_count(ch, INTAKE_SUBMISSIONS.dlq_name(ns), 0) == 0

        app = build_app(s)
        async with app.router.lifespan_context(app):
            dlq = await ch.declare_queue(INTAKE_SUBMISSIONS.dlq_name(ns), passive=True)
            dead = await next_message(dlq, timeout=20)
            assert dead is not None
            await dead.nack(requeue=True)  # left for the replay below
            assert await message_count(ch, quarantine_name, 0, timeout=20) == 0
            everything = dead.body.decode() + json.dumps(
                {k: str(v) for k, v in (dead.headers or {}).items()})
            for v in needles(who) + [good["external_id"], good["title"], good["description"]]:
                assert v not in everything
            ref = json.loads(dead.body)
            assert set(ref) == {"failed_submission_id", "reason"}
            assert set(dead.headers) == {"x-sp4n-error", "x-sp4n-original-queue"}
            reason = dead.headers["x-sp4n-error"]
            assert reason == ref["reason"] and "delivery_limit" in reason
            assert INTAKE_SUBMISSIONS.name(ns) in reason
            # Its content is kept, encrypted, and recoverable.
            failed_id = uuid.UUID(ref["failed_submission_id"])
            row = await db.fetchrow("SELECT * FROM failed_submissions WHERE id = $1", failed_id)
            assert row["reason"] == reason and row["sender"] is None
            assert who["nik"].encode() not in row["body"]
            kept = await privacy.failed_submission(db, keyring_from(s.intake), failed_id)
            assert kept is not None and kept.body == raw
            code, out = await asyncio.to_thread(run_cli, s, monkeypatch, capsys, "dlq", "list")
            assert code == 0 and f"{INTAKE_SUBMISSIONS.dlq_name(ns)} " in out

            # Replayed: submitted from intake's copy, which is then deleted.
            code, out = await asyncio.to_thread(run_cli, s, monkeypatch, capsys,
                                                "dlq", "replay", "intake.submissions.v1")
            assert code == 0 and "replayed 1 messages" in out
            complaint = None
            for _ in range(200):
                complaint = await db.fetchrow("SELECT source FROM complaints WHERE external_id = $1",
                                              good["external_id"])
                if complaint is not None:
                    break
                await asyncio.sleep(0.1)
            assert complaint is not None and complaint["source"] == good["source"]
            for _ in range(100):
                if await db.fetchval("SELECT count(*) FROM failed_submissions WHERE id = $1",
                                     failed_id) == 0:
                    break
                await asyncio.sleep(0.1)
            assert await db.fetchval("SELECT count(*) FROM failed_submissions WHERE id = $1",
                                     failed_id) == 0
            assert await message_count(ch, INTAKE_SUBMISSIONS.dlq_name(ns), 0, timeout=20) == 0
            # A second replay of the same reference (a duplicate) finds nothing to resubmit.
            await dlx.publish(aio_pika.Message(dead.body, headers={"x-sp4n-error": reason}),
                              routing_key=INTAKE_SUBMISSIONS.dlq_routing_key(ns))
            assert await message_count(ch, INTAKE_SUBMISSIONS.dlq_name(ns), 1) == 1
            code, out = await asyncio.to_thread(run_cli, s, monkeypatch, capsys,
                                                "dlq", "replay", "intake.submissions.v1")
            again = await next_message(dlq, timeout=20)
            assert again is not None and "no longer kept" in again.headers["x-sp4n-error"]
            assert json.loads(again.body)["failed_submission_id"] == str(failed_id)
            await again.ack()
    finally:
        await amqp.close()
        await delete_namespace(s.amqp_url, ns)


# --- OPD contact expiry --------------------------------------------------------------------

async def test_an_opd_sees_the_contact_only_until_n_days_after_selesai(intake, keys, db):
    _, client = intake
    who = identity()
    cid = (await submit(client, keys, who))["complaint_id"]
    await act(client, keys, "admin", cid, "dispose")
    await act(client, keys, "dinkes", cid, "respond")
    await act(client, keys, "admin", cid, "close")
    days = IntakeSettings().opd_contact_days_after_close
    contact = {"name": who["name"], "phone": who["phone"], "email": who["email"], "nik": None}

    async def closed_days_ago(n: float) -> None:
        await db.execute("UPDATE complaints SET closed_at = now() - make_interval(secs => $2)"
                         " WHERE id = $1", uuid.UUID(cid), n * 86400)

    shown = await detail(client, keys, "dinkes", cid)
    assert shown["status"] == "SELESAI" and shown["reporter"] == contact
    await closed_days_ago(days - 1)
    assert (await detail(client, keys, "dinkes", cid))["reporter"] == contact
    await closed_days_ago(days + 1)
    expired = await detail(client, keys, "dinkes", cid)
    assert "reporter" not in expired and expired["reporter_withheld"] == "access_expired"
    admin = await detail(client, keys, "admin", cid)  # the admin koordinator keeps access
    assert admin["reporter"]["nik"] == who["nik"] and "reporter_withheld" not in admin
    # A reopen (banding) puts it back with the OPD: the contact is needed again.
    await act(client, keys, "portal", cid, "reopen")
    assert (await detail(client, keys, "dinkes", cid))["reporter"] == contact


async def test_anonim_reports_never_show_identity_on_any_read(intake, keys, db):
    _, client = intake
    who = identity()
    cid = (await submit(client, keys, who, anonymous=True))["complaint_id"]
    await act(client, keys, "admin", cid, "dispose")
    for reader in ("admin", "dinkes", "portal"):
        shown = await detail(client, keys, reader, cid)
        assert "reporter" not in shown and "reporter_withheld" not in shown
        assert not any(v in json.dumps(shown) for v in needles(who))
    listing = await client.get("/v1/complaints", headers=keys["admin"])
    assert not any(v in listing.text for v in needles(who))
    assert await plaintext_anywhere(db, needles(who)) == []


# --- rows from before encryption, and master key rotation ------------------------------------

@pytest.fixture
async def legacy_schema(settings, tmp_path):
    """intake's schema at migration 0004 in a schema of its own, dropped afterwards."""
    schema = f"legacy_{uuid.uuid4().hex[:8]}"
    for f in sorted(MIGRATIONS.glob("*.sql")):
        if f.name < "0005":
            shutil.copy(f, tmp_path / f.name)
    await migrate(settings.database_url, schema, tmp_path)
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": schema})
    try:
        yield schema, conn
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


async def test_migration_0007_moves_plaintext_aside_and_start_up_encrypts_it(settings, legacy_schema):
    schema, conn = legacy_schema
    who = identity()
    cid = uuid.uuid4()
    await conn.execute(
        "INSERT INTO complaints (id, tracking_id, source, external_id, fingerprint, submission,"
        " classification, category, title, anonymous, confidential, reporter_ref, received_at,"
        " accepted_at) VALUES ($1, 'SKD-260101-OLD001', 'portal-sekadau', 'old-1', 'fp', '{}',"
        " 'pengaduan', 'kesehatan', 'Laporan lama', false, false, 'rep_x', now(), now())", cid)
    await conn.execute("INSERT INTO reporters (complaint_id, name, phone, email, nik, fingerprint)"
                       " VALUES ($1, $2, $3, $4, $5, 'fp')", cid, who["name"], who["phone"],
                       who["email"], who["nik"])
    await migrate(settings.database_url, schema, MIGRATIONS)
    cols = {r["column_name"] for r in await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = $1"
        " AND table_name = 'reporters'", schema)}
    assert not {"name", "phone", "email", "nik"} & cols
    moved = await conn.fetchval("SELECT nik FROM reporters_plaintext WHERE complaint_id = $1", cid)
    assert moved == who["nik"]

    keyring = keyring_from(IntakeSettings())
    assert await privacy.encrypt_existing(conn, keyring, batch=1) == 1
    assert await privacy.encrypt_existing(conn, keyring) == 0  # idempotent
    assert await conn.fetchval("SELECT count(*) FROM reporters_plaintext") == 0
    r = await conn.fetchrow("SELECT r.*, k.key_id, k.wrapped_key FROM reporters r"
                            " JOIN reporter_keys k USING (complaint_id) WHERE complaint_id = $1", cid)
    sealed = SealedReporter(name=r["name_ct"], phone=r["phone_ct"], email=r["email_ct"], nik=r["nik_ct"],
                            key_id=r["key_id"], wrapped_key=r["wrapped_key"])
    assert open_reporter(keyring, cid, sealed).nik == who["nik"]
    assert who["nik"].encode() not in b"".join(
        v for v in (sealed.name, sealed.phone, sealed.email, sealed.nik, sealed.wrapped_key) if v)

    # Rotation: a new current master key re-wraps the data key; the old key can then go.
    new = Keyring("k2", {"k2": b"\x07" * 32, "dev": decode_master_key(IntakeSettings().master_key)})
    failed_pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=1,
                                            server_settings={"search_path": schema})
    try:
        fid = await privacy.store_failed_submission(failed_pool, keyring, b'{"x": 1}', "invalid")
    finally:
        await failed_pool.close()
    assert await privacy.rotate_master_key(conn, new, batch=1) == 2
    assert await privacy.rotate_master_key(conn, new) == 0
    only_new = Keyring("k2", {"k2": b"\x07" * 32})
    key = await conn.fetchrow("SELECT key_id, wrapped_key FROM reporter_keys WHERE complaint_id = $1", cid)
    assert key["key_id"] == "k2"
    rotated = dataclasses.replace(sealed, key_id=key["key_id"], wrapped_key=key["wrapped_key"])
    assert open_reporter(only_new, cid, rotated).nik == who["nik"]
    f = await privacy.failed_submission(conn, only_new, fid)
    assert f is not None and f.body == b'{"x": 1}'
    with pytest.raises(Undecryptable):
        keyring.unwrap(f"reporter:{cid}", WrappedKey(key["key_id"], key["wrapped_key"]))

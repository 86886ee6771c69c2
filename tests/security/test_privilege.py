"""Least privilege (issue 8): each service's own PostgreSQL role and RabbitMQ user, made by
``sp4n bootstrap`` with per-run names, and the attacks a compromised service would try.

Everything cluster-global this module creates (roles, users, a database, a namespace) is
named for this run and removed in ``finally``, even when a test fails.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import aio_pika
import aiormq.exceptions
import asyncpg
import httpx
import pytest

from services.cli import migrate_all
from services.cli.bootstrap import Bootstrapped, Plan, bootstrap, unbootstrap
from services.cli.broker_users import Management, wait_until_up
from services.intake.apikeys import create_api_key
from shared.privileges import broker_user, portal_user, portal_user_prefix
from shared.settings import IntakeSettings, NotifySettings, Settings
from shared.topology import INTAKE_SUBMISSIONS, SLA_COMPLAINTS, SUBMISSION_ROUTING_KEY
from tests.e2e import system as sp4n
from tests.e2e.system import ROOT, settings_env
from tests.infra import (
    create_database,
    delete_namespace,
    drop_database,
    unique_suffix,
    with_database,
)

pytestmark = pytest.mark.integration


class World:
    """This run's database, namespace, bootstrap prefix and the credentials it handed out."""

    def __init__(self, infra) -> None:
        suffix = unique_suffix()
        self.infra = infra
        self.prefix = f"t{suffix}"
        self.database = f"sp4n_priv_{suffix}"
        self.namespace = f"sp4npriv-{suffix}"
        self.admin_db = with_database(infra.postgres_admin_url, self.database)
        self.creds = Bootstrapped()

    def db_url(self, who: str) -> str:
        return self.creds.env[who]["SP4N_DATABASE_URL"]

    def amqp_url(self, who: str) -> str:
        return self.creds.env[who]["SP4N_AMQP_URL"]


@pytest.fixture(scope="module")
async def world(infra):
    w = World(infra)
    try:
        wait_until_up(Management.from_urls(infra.amqp_url), timeout_s=10)
    except RuntimeError as exc:  # testcontainers' broker: no management port mapped
        if os.environ.get("SP4N_REQUIRE_INFRA") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    try:
        await create_database(infra.postgres_admin_url, w.database)
        w.creds = await bootstrap(Plan(
            prefix=w.prefix, database_url=w.admin_db, amqp_url=infra.amqp_url,
            namespace=w.namespace, delivery_limit=5, portals=("wa-bot", "lapor"), wait_s=10))
        # The owner role migrates (as `sp4n migrate` does with migrate.env), not a superuser.
        owner = Settings(database_url=w.db_url("migrate"), amqp_url=w.amqp_url("migrate"),
                         namespace=w.namespace)
        applied = await migrate_all(owner)
        assert all(applied.values()), applied
        yield w
    finally:
        await delete_namespace(infra.amqp_url, w.namespace)
        await drop_database(infra.postgres_admin_url, w.database)
        await unbootstrap(infra.postgres_admin_url, infra.amqp_url, w.prefix)


# --- PostgreSQL ----------------------------------------------------------------------------

async def test_bootstrap_is_idempotent_and_names_every_role_and_user(world):
    again = await bootstrap(Plan(
        prefix=world.prefix, database_url=world.admin_db, amqp_url=world.infra.amqp_url,
        namespace=world.namespace, delivery_limit=5, portals=("wa-bot", "lapor"),
        passwords={f"{n}.{k}": _password(world.creds.env[n][v])
                   for n in world.creds.env for k, v in (("db", "SP4N_DATABASE_URL"),
                                                         ("amqp", "SP4N_AMQP_URL"))
                   if v in world.creds.env[n]}))
    text = "\n".join(again.lines)
    for svc in ("intake", "routing", "sla", "notify"):
        assert f"postgres role {world.prefix}_{svc}: updated" in text
        assert f"rabbitmq user {broker_user(world.prefix, svc)}: updated" in text
    assert f"rabbitmq user {portal_user(world.prefix, 'wa-bot')}: updated" in text
    assert again.env["notify"] == world.creds.env["notify"]  # the same passwords kept
    conn = await asyncpg.connect(world.db_url("notify"))
    await conn.close()


def test_bootstrap_command_keeps_the_passwords_of_its_env_files(world, tmp_path, monkeypatch, capsys):
    from services.cli import main
    from services.cli.bootstrap import write_env_files

    write_env_files(tmp_path, world.creds.env)
    before = {p.name: p.read_text() for p in tmp_path.glob("*.env")}
    monkeypatch.setenv("SP4N_DATABASE_URL", world.admin_db)
    monkeypatch.setenv("SP4N_AMQP_URL", world.infra.amqp_url)
    monkeypatch.setenv("SP4N_NAMESPACE", world.namespace)
    code = main(["bootstrap", "--prefix", world.prefix, "--portal", "wa-bot", "--portal", "lapor",
                 "--env-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"postgres role {world.prefix}_owner: updated" in out
    assert {p.name: p.read_text() for p in tmp_path.glob("*.env")} == before
    assert {oct(p.stat().st_mode & 0o777) for p in tmp_path.glob("*.env")} == {"0o600"}
    for pw in (_password(v) for env in world.creds.env.values() for v in env.values()
               if v.startswith(("postgresql:", "amqp:"))):
        assert pw not in out  # what it did, never a password


def _password(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(url).password or "")


async def test_notify_role_cannot_read_reporters_nik(world):
    conn = await asyncpg.connect(world.db_url("notify"))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT nik_ct FROM intake.reporters")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM intake.api_keys")
        # Its own tables work: the grants are not simply missing.
        assert await conn.fetchval("SELECT count(*) FROM notify.deliveries") == 0
        await conn.execute("INSERT INTO notify.inbox (event_id, event_type) VALUES ($1, $2)",
                           str(uuid.uuid4()), "test")
    finally:
        await conn.close()
    intake = await asyncpg.connect(world.db_url("intake"))
    try:
        assert await intake.fetchval("SELECT count(nik_ct) FROM intake.reporters") == 0
    finally:
        await intake.close()


async def test_notify_role_cannot_copy_to_program_nor_create_tables(world):
    conn = await asyncpg.connect(world.db_url("notify"))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("COPY (SELECT 1) TO PROGRAM 'id'")
        for ddl in ("CREATE TABLE notify.stolen (x text)", "CREATE TABLE public.stolen (x text)",
                    "CREATE TEMP TABLE stolen (x text)", "CREATE SCHEMA stolen",
                    "DROP TABLE notify.deliveries", "ALTER TABLE notify.deliveries ADD COLUMN x int"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(ddl)
    finally:
        await conn.close()


async def test_service_roles_cannot_rewrite_the_migration_ledger(world):
    conn = await asyncpg.connect(world.db_url("routing"))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM routing.schema_migrations")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM sla.clocks")
    finally:
        await conn.close()


async def test_a_later_migration_is_granted_to_its_service_only(world):
    """Default privileges: a table the owner creates later is usable by its service's role."""
    owner = await asyncpg.connect(world.db_url("migrate"))
    try:
        await owner.execute("CREATE TABLE sla.later_table (x int)")
        await owner.execute("CREATE SEQUENCE sla.later_seq")
    finally:
        await owner.close()
    sla = await asyncpg.connect(world.db_url("sla"))
    notify = await asyncpg.connect(world.db_url("notify"))
    try:
        await sla.execute("INSERT INTO sla.later_table VALUES (nextval('sla.later_seq'))")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await notify.fetch("SELECT * FROM sla.later_table")
    finally:
        await sla.close()
        await notify.close()


# --- RabbitMQ ------------------------------------------------------------------------------

async def _publish(url: str, exchange: str, routing_key: str, body: bytes,
                   user_id: str | None = None) -> None:
    """Publish with publisher confirms; raises what the broker answers (a closed channel)."""
    conn = await aio_pika.connect(url)
    try:
        channel = await conn.channel(publisher_confirms=True)
        ex = await channel.get_exchange(exchange, ensure=False)
        await ex.publish(aio_pika.Message(body, user_id=user_id, content_type="application/json",
                                          delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                         routing_key=routing_key, mandatory=False)
    finally:
        await conn.close()


async def test_notify_cannot_publish_complaint_routed_but_its_own_events(world):
    events = f"{world.namespace}.events"
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
        await _publish(world.amqp_url("notify"), events, "complaint.routed", b"{}")
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
        await _publish(world.amqp_url("notify"), events, "sla.breached", b"{}")
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
        await _publish(world.amqp_url("routing"), events, "sla.breached", b"{}")
    await _publish(world.amqp_url("notify"), events, "notification.delivered", b"{}")
    await _publish(world.amqp_url("routing"), events, "complaint.triage_required", b"{}")


async def test_routing_cannot_read_slas_queue_nor_a_portal_anything_but_submit(world):
    conn = await aio_pika.connect(world.amqp_url("routing"))
    try:
        channel = await conn.channel()
        queue = await channel.get_queue(SLA_COMPLAINTS.name(world.namespace), ensure=False)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await queue.get(fail=False)
        channel = await conn.channel()
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await channel.declare_queue(f"{world.namespace}.sla.stolen", durable=True)
    finally:
        await conn.close()
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
        await _publish(world.amqp_url("portal-wa-bot"), f"{world.namespace}.events",
                       "complaint.submitted", b"{}")


async def test_a_portal_cannot_claim_another_portals_user_id(world):
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
        await _publish(world.amqp_url("portal-wa-bot"), f"{world.namespace}.inbound",
                       SUBMISSION_ROUTING_KEY, b"{}", user_id=portal_user(world.prefix, "lapor"))


# --- the whole system with per-service credentials, in production mode ----------------------

def complaint(source: str | None, **over):
    body = {
        "external_id": f"priv-{uuid.uuid4().hex[:10]}",
        "received_at": datetime.now(UTC).isoformat(), "classification": "pengaduan",
        "category": "infrastruktur_jalan", "title": "Jalan berlubang di Sungai Ayak",
        "description": "Jalan desa berlubang besar di depan SD, membahayakan anak sekolah.",
        "location": {"kecamatan": "Belitang Hilir", "desa": "Sungai Ayak"},
        "reporter": {"name": "Siti Aminah", "phone": "+6281234500000"},
    }
    if source is not None:
        body["source"] = source
    return body | over


def production_settings(world) -> Settings:
    """Production settings with every secret set (each service's section secrets: any field
    declared ``repr=False``; a field another branch has not added yet is ignored)."""
    return Settings(
        env="production", database_url=world.admin_db, amqp_url=world.infra.amqp_url,
        namespace=world.namespace, db_pool_min=1, db_pool_max=3, outbox_poll_interval_s=0.2,
        intake=IntakeSettings(reporter_ref_key=secrets.token_urlsafe(32),
                              web_session_secret=secrets.token_urlsafe(32),
                              master_key=base64.b64encode(os.urandom(32)).decode(),
                              portal_user_prefix=portal_user_prefix(world.prefix)),
        notify=NotifySettings(secrets_key=base64.b64encode(os.urandom(32)).decode()))


@pytest.fixture(scope="module")
def running(world, tmp_path_factory):
    services = ["intake", "routing", "sla", "notify"]
    env_of = {svc: {"SP4N_DATABASE_URL": world.db_url(svc), "SP4N_AMQP_URL": world.amqp_url(svc)}
              for svc in services}
    for svc in ("routing", "sla", "notify"):
        env_of[svc]["SP4N_INTAKE"] = "{}"  # intake's secrets: neither needed nor given
    system = sp4n.start(production_settings(world), services, tmp_path_factory.mktemp("logs"),
                        env_of=env_of)
    yield system
    system.stop()


async def _complaint_row(world, external_id: str, timeout: float = 15) -> asyncpg.Record | None:
    conn = await asyncpg.connect(world.admin_db)
    try:
        for _ in range(int(timeout / 0.1)):
            row = await conn.fetchrow("SELECT id, source FROM intake.complaints WHERE external_id = $1",
                                      external_id)
            if row is not None:
                return row
            await asyncio.sleep(0.1)
        return None
    finally:
        await conn.close()


async def _dead_letter(world, reason: str, timeout: float = 15) -> aio_pika.abc.AbstractIncomingMessage:
    """The next DLQ message whose reason contains ``reason``; its body is a reference to
    intake's encrypted copy of the submission, never the submission."""
    conn = await aio_pika.connect(world.infra.amqp_url)
    try:
        channel = await conn.channel()
        dlq = await channel.get_queue(INTAKE_SUBMISSIONS.dlq_name(world.namespace), ensure=False)
        for _ in range(int(timeout / 0.1)):
            msg = await dlq.get(fail=False)
            if msg is None:
                await asyncio.sleep(0.1)
                continue
            await msg.ack()
            if reason in str((msg.headers or {}).get("x-sp4n-error", "")):
                assert set(json.loads(msg.body)) == {"failed_submission_id", "reason"}
                return msg
        raise AssertionError(f"no submission dead-lettered for {reason!r}")
    finally:
        await conn.close()


async def test_system_runs_end_to_end_with_per_service_credentials(world, running):
    conn = await asyncpg.connect(world.db_url("intake"), server_settings={"search_path": "intake"})
    try:
        _, key = await create_api_key(conn, "priv-portal", "portal", "portal-sekadau")
    finally:
        await conn.close()
    async with httpx.AsyncClient(base_url=running.url("intake"),
                                 headers={"Authorization": f"Bearer {key}"}, timeout=10) as api:
        r = await api.post("/v1/complaints", json=complaint("portal-sekadau"))
        assert r.status_code == 202, r.text
        status: dict = {}
        for _ in range(150):
            status = (await api.get(r.json()["status_url"])).json()
            if status["status"] == "TERDISPOSISI" and len(status.get("clocks", [])) >= 3:
                break
            await asyncio.sleep(0.1)
    assert status["status"] == "TERDISPOSISI" and status["opd_code"] == "dpupr", status
    assert {c["clock"] for c in status["clocks"]} >= {"verification", "completion", "opd_response"}
    for svc in running.procs:
        assert httpx.get(f"{running.url(svc)}/readyz").status_code == 200


async def test_amqp_submission_takes_the_source_of_the_portal_user(world, running):
    body = complaint(None)  # no source in the body: the sender's
    await _publish(world.amqp_url("portal-wa-bot"), f"{world.namespace}.inbound",
                   SUBMISSION_ROUTING_KEY, json.dumps(body).encode(),
                   user_id=portal_user(world.prefix, "wa-bot"))
    row = await _complaint_row(world, body["external_id"])
    assert row is not None and row["source"] == "wa-bot"
    same = complaint("lapor")
    await _publish(world.amqp_url("portal-lapor"), f"{world.namespace}.inbound",
                   SUBMISSION_ROUTING_KEY, json.dumps(same).encode(),
                   user_id=portal_user(world.prefix, "lapor"))
    row = await _complaint_row(world, same["external_id"])
    assert row is not None and row["source"] == "lapor"


async def test_amqp_submission_with_a_forged_source_is_dead_lettered(world, running):
    forged = complaint("lapor")
    await _publish(world.amqp_url("portal-wa-bot"), f"{world.namespace}.inbound",
                   SUBMISSION_ROUTING_KEY, json.dumps(forged).encode(),
                   user_id=portal_user(world.prefix, "wa-bot"))
    await _dead_letter(world, "differs from the sender's source 'wa-bot'")
    anonymous = complaint("wa-bot")
    await _publish(world.amqp_url("portal-wa-bot"), f"{world.namespace}.inbound",
                   SUBMISSION_ROUTING_KEY, json.dumps(anonymous).encode())  # no user_id
    await _dead_letter(world, "without user_id")
    assert await _complaint_row(world, forged["external_id"], timeout=0.5) is None
    assert await _complaint_row(world, anonymous["external_id"], timeout=0.5) is None


# --- production refuses default secrets ---------------------------------------------------

@pytest.mark.parametrize(("service", "env", "named"), [
    ("intake", {}, "SP4N_INTAKE__REPORTER_REF_KEY"),
    ("intake", {"SP4N_INTAKE": "{}"}, "SP4N_INTAKE__WEB_SESSION_SECRET"),
    ("routing", {"SP4N_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/sp4n"}, "SP4N_DATABASE_URL"),
    ("notify", {"SP4N_AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/"}, "SP4N_AMQP_URL"),
])
def test_production_start_with_a_default_secret_is_refused_naming_it(world, service, env, named):
    settings = production_settings(world)
    base = settings_env(settings, intake={"reporter_ref_key": "dev-only-reporter-ref-key"})
    base |= {"SP4N_DATABASE_URL": world.db_url(service), "SP4N_AMQP_URL": world.amqp_url(service)}
    proc = subprocess.run([sys.executable, "-m", f"services.{service}"], env=base | env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert named in proc.stderr, proc.stderr[-2000:]
    assert "refusing to start with SP4N_ENV=production" in proc.stderr
    if service != "intake":  # intake's secrets are intake's only
        assert "SP4N_INTAKE__" not in proc.stderr


async def test_production_refuses_a_superuser_role_whatever_its_name(world):
    """The name check cannot know every superuser; the start-up query can."""
    role, password = f"{world.prefix}_su", secrets.token_urlsafe(24)
    admin = await asyncpg.connect(world.infra.postgres_admin_url)
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN SUPERUSER PASSWORD \'{password}\'')
        from urllib.parse import urlsplit
        host = urlsplit(world.admin_db)
        url = f"postgresql://{role}:{password}@{host.hostname}:{host.port or 5432}/{world.database}"
        env = settings_env(production_settings(world)) | {
            "SP4N_DATABASE_URL": url, "SP4N_AMQP_URL": world.amqp_url("routing")}
        proc = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "services.routing"], env=env, cwd=ROOT,
            capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0
        logs = proc.stdout + proc.stderr  # the lifespan's failure is logged (JSON, stdout)
        assert "SP4N_DATABASE_URL names a superuser" in logs, logs[-2000:]
    finally:
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()

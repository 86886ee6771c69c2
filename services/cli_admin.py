"""Operator commands of ``sp4n``: webhook subscriptions, the working-day calendar, deadline
policies and dead-letter queues. Each talks to its own service's schema, as that service's
own code does (``services.<name>.admin``/``repository``), never across schemas."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import date

import aio_pika
import asyncpg

from shared.db import migrate
from shared.settings import Settings
from shared.topology import ALL_QUEUES

# -- webhook subscriptions (notify) ------------------------------------------------------


def cmd_subscription(settings: Settings, args) -> int:
    from services.notify import admin

    async def go() -> int:
        async with admin.connect(settings) as db:
            if args.action == "add":
                sub = await admin.add_subscription(
                    db, name=args.name, url=args.url, event_types=_csv(args.events),
                    opd_codes=_csv(args.opd) or None, secret=args.secret, replace=args.replace)
                print(f"subscription '{sub.name}' → {sub.url} for {', '.join(sub.event_types)}"
                      f"{' (OPD ' + ', '.join(sub.opd_codes) + ')' if sub.opd_codes else ''}",
                      file=sys.stderr)
                if not args.secret:
                    print("signing secret (give it to the receiver; not shown again):", file=sys.stderr)
                    print(sub.secret)
                return 0
            if args.action == "list":
                for s in await admin.list_subscriptions(db):
                    print(f"{s.name:<20} {'on ' if s.enabled else 'off'} {s.url:<45} "
                          f"{','.join(s.event_types):<40} opd={','.join(s.opd_codes or ('*',))} "
                          f"secret={s.secret[:10]}…")
                return 0
            if args.action in ("pause", "resume"):
                ok = await admin.set_subscription_enabled(db, args.name, args.action == "resume")
            else:
                ok = await admin.remove_subscription(db, args.name)
            if not ok:
                print(f"no subscription named '{args.name}'", file=sys.stderr)
                return 1
            print(f"subscription '{args.name}': {args.action} done")
            return 0

    return _run(go)


def cmd_webhook(settings: Settings, args) -> int:
    from services.notify import admin

    async def go() -> int:
        async with admin.connect(settings) as db:
            if args.action == "dead-letters":
                rows = await admin.list_dead_lettered(db, subscription=args.subscription)
                for d in rows:
                    print(f"#{d.id:<6} {d.subscription:<18} {d.event_type:<32} complaint={d.complaint_id} "
                          f"attempts={d.attempts} last={d.last_status_code or '-'} "
                          f"{(d.last_error or '')[:60]}")
                print(f"{len(rows)} dead-lettered deliveries", file=sys.stderr)
                return 0
            if args.all:
                n = await admin.replay_all_dead_lettered(db, subscription=args.subscription)
                print(f"{n} deliveries queued again")
                return 0
            if args.id is None:
                print("give a delivery number or --all", file=sys.stderr)
                return 2
            ok = await admin.replay_dead_lettered(db, args.id)
            print(f"delivery #{args.id} queued again" if ok else f"no dead-lettered delivery #{args.id}")
            return 0 if ok else 1

    return _run(go)


# -- calendar and policies (sla) -----------------------------------------------------------


async def _sla_conn(settings: Settings) -> asyncpg.Connection:
    from services.cli import ensure_database, migrations_of

    await ensure_database(settings.database_url)
    await migrate(settings.database_url, "sla", migrations_of("sla"))
    return await asyncpg.connect(settings.database_url, server_settings={"search_path": "sla"})


def cmd_calendar(settings: Settings, args) -> int:
    from services.sla import repository, usecases
    from services.sla.calendar import library_holiday_names

    async def go() -> int:
        conn = await _sla_conn(settings)
        try:
            if args.action == "list":
                year = args.year or date.today().year
                overrides = {r.day: r for r in await repository.list_calendar_overrides(conn)}
                print(f"libur nasional dan cuti bersama {year} (paket holidays):")
                for day, name in sorted(library_holiday_names(year).items()):
                    mark = ""
                    if day in overrides:
                        mark = f"  ← override: {'hari kerja' if overrides[day].working else 'libur'}"
                    print(f"  {day:%a %d-%m-%Y}  {name}{mark}")
                print("override (menang atas paket):")
                for day, r in sorted(overrides.items()):
                    print(f"  {day:%a %d-%m-%Y}  {'hari kerja' if r.working else 'libur'}  {r.reason}")
                print(f"revisi kalender: {await repository.calendar_revision(conn)}")
                return 0
            day = date.fromisoformat(args.date)
            async with conn.transaction():
                if args.action == "set":
                    revision = await usecases.set_calendar_override(conn, day, args.working, args.reason)
                else:
                    revision = await usecases.remove_calendar_override(conn, day)
            print(f"{day}: {args.action} done; calendar revision {revision} "
                  "(applies to clocks started from now on)")
            return 0
        finally:
            await conn.close()

    return _run(go)


def cmd_policy(settings: Settings, args) -> int:
    from services.sla import repository

    async def go() -> int:
        conn = await _sla_conn(settings)
        try:
            if args.action == "set":
                if not args.clock or args.working_days is None:
                    print("usage: sp4n policy set CLOCK WORKING_DAYS [--warn N]", file=sys.stderr)
                    return 2
                p = await repository.set_policy(conn, args.clock, args.working_days, args.warn)
                print(f"{p.key}: {p.working_days} HK, version {p.version} (clocks started from now on)")
            for p in sorted((await repository.load_policies(conn)).values(), key=lambda p: p.key):
                print(f"  {p.key:<36} {p.working_days:>3} HK  peringatan {p.warn_before_working_days} HK "
                      f"sebelumnya  v{p.version}")
            return 0
        finally:
            await conn.close()

    return _run(go)


# -- dead-letter queues (every service) ----------------------------------------------------


def cmd_dlq(settings: Settings, args) -> int:
    """Inspect or replay a DLQ. Replay sends each message back to the queue it came from
    (through the default exchange), so only the consumer that failed sees it again."""
    ns = settings.namespace
    specs = {spec.name(ns): spec for spec in ALL_QUEUES}

    async def go() -> int:
        conn = await aio_pika.connect(settings.amqp_url)
        try:
            if args.action == "list":
                for name, spec in specs.items():
                    async with conn.channel() as ch:
                        try:
                            q = await ch.declare_queue(spec.dlq_name(ns), passive=True)
                        except aio_pika.exceptions.ChannelClosed:
                            print(f"{spec.dlq_name(ns):<55} (not declared yet)")
                            continue
                        print(f"{spec.dlq_name(ns):<55} {q.declaration_result.message_count} messages")
                return 0
            target = args.queue if args.queue in specs else f"{ns}.{args.queue}"
            if target not in specs:
                print(f"unknown queue {args.queue}; one of: {', '.join(specs)}", file=sys.stderr)
                return 2
            ch = await conn.channel(publisher_confirms=True)
            dlq = await ch.declare_queue(specs[target].dlq_name(ns), passive=True)
            moved = 0
            while args.limit is None or moved < args.limit:
                msg = await dlq.get(fail=False, no_ack=False)
                if msg is None:
                    break
                if args.action == "show":
                    print(json.dumps({"message_id": msg.message_id,
                                      "error": _death_reason(msg.headers or {}),
                                      "body": msg.body.decode(errors="replace")[:500]},
                                     ensure_ascii=False))
                    await msg.nack(requeue=True)
                    moved += 1
                    continue
                headers = {k: v for k, v in (msg.headers or {}).items()
                           if not k.startswith(("x-death", "x-first-death", "x-last-death"))}
                headers["x-sp4n-replayed"] = int(headers.get("x-sp4n-replayed", 0)) + 1
                await ch.default_exchange.publish(
                    aio_pika.Message(msg.body, headers=headers, content_type=msg.content_type,
                                     message_id=msg.message_id,
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=target)
                await msg.ack()
                moved += 1
            if args.action == "replay":
                print(f"replayed {moved} messages from {specs[target].dlq_name(ns)} to {target}")
            return 0
        finally:
            await conn.close()

    return _run(go)


def _death_reason(headers: dict) -> str | None:
    """Why a message is in the DLQ: sp4n's own reason, else RabbitMQ's x-death record."""
    if headers.get("x-sp4n-error"):
        return str(headers["x-sp4n-error"])
    deaths = headers.get("x-death") or []
    if deaths:
        d = deaths[0]
        return (f"{d.get('reason')} on {d.get('queue')} after {d.get('count')} dead-lettering(s);"
                " delivery limit reached (the handler kept failing: see the service's log)")
    return None


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _run(go) -> int:
    try:
        return asyncio.run(go())
    except ValueError as exc:  # the admin functions name the field and the reason
        print(f"error: {exc}", file=sys.stderr)
        return 2


def register(sub: argparse._SubParsersAction) -> dict:
    s = sub.add_parser("subscription", help="webhook subscriptions (notify)")
    s.add_argument("action", choices=("add", "list", "pause", "resume", "remove"))
    s.add_argument("name", nargs="?")
    s.add_argument("--url")
    s.add_argument("--events", help="comma list, e.g. sla.breached,sla.warning or sla.*")
    s.add_argument("--opd", help="comma list of OPD codes (default: all)")
    s.add_argument("--secret", help="whsec_… (default: generated and printed once)")
    s.add_argument("--replace", action="store_true", help="overwrite a subscription of that name")

    w = sub.add_parser("webhook", help="dead-lettered webhook deliveries (notify)")
    w.add_argument("action", choices=("dead-letters", "replay"))
    w.add_argument("id", nargs="?", type=int)
    w.add_argument("--subscription")
    w.add_argument("--all", action="store_true")

    c = sub.add_parser("calendar", help="working-day calendar overrides (sla)")
    c.add_argument("action", choices=("list", "set", "remove"))
    c.add_argument("date", nargs="?", help="YYYY-MM-DD")
    c.add_argument("--year", type=int)
    mode = c.add_mutually_exclusive_group()
    mode.add_argument("--working", dest="working", action="store_true", help="make it a working day")
    mode.add_argument("--closed", dest="working", action="store_false", help="close the day (libur)")
    c.add_argument("--reason", default="")

    p = sub.add_parser("policy", help="deadline policies in working days (sla)")
    p.add_argument("action", choices=("list", "set"))
    p.add_argument("clock", nargs="?")
    p.add_argument("working_days", nargs="?", type=int)
    p.add_argument("--warn", type=int, help="warning this many working days before")

    d = sub.add_parser("dlq", help="dead-letter queues: list, show, replay")
    d.add_argument("action", choices=("list", "show", "replay"))
    d.add_argument("queue", nargs="?", help="e.g. routing.submitted.v1")
    d.add_argument("--limit", type=int)
    return {"subscription": cmd_subscription, "webhook": cmd_webhook, "calendar": cmd_calendar,
            "policy": cmd_policy, "dlq": cmd_dlq}

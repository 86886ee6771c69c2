"""The notify service's operator commands: webhook subscriptions and dead-lettered
deliveries (``services.notify.admin``, on the notify schema)."""

from __future__ import annotations

import click

from services.cli.common import csv, migrations_of, pass_settings, run_async
from services.notify import admin
from services.notify.targets import target_policy
from shared.connect import service_pool
from shared.settings import Settings

# -- subscriptions -------------------------------------------------------------------------


@click.group("subscription", short_help="Webhook subscriptions (notify).")
def subscription() -> None:
    """Webhook subscriptions (notify): who receives which events, signed with a secret."""


@subscription.command("add", short_help="Add a subscription; a generated secret is printed once.")
@click.argument("name")
@click.option("--url", required=True, help="the receiver, http:// or https://")
@click.option("--events", help="comma list, e.g. sla.breached,sla.warning or sla.*")
@click.option("--opd", help="comma list of OPD codes (default: all)")
@click.option("--secret", help="whsec_… (default: generated and printed once)")
@click.option("--replace", is_flag=True, help="overwrite a subscription of that name")
@pass_settings
def subscription_add(settings: Settings, name: str, url: str, events: str | None, opd: str | None,
                     secret: str | None, replace: bool) -> int:
    """Add subscription NAME; a generated signing secret is printed once (stdout)."""

    async def go() -> int:
        async with service_pool(settings, "notify", migrations=migrations_of("notify")) as db:
            sub = await admin.add_subscription(
                db, name=name, url=url, event_types=csv(events), opd_codes=csv(opd) or None,
                secret=secret, replace=replace, box=admin.box_of(settings),
                policy=target_policy(settings))
        click.echo(f"subscription '{sub.name}' → {sub.url} for {', '.join(sub.event_types)}"
                   f"{' (OPD ' + ', '.join(sub.opd_codes) + ')' if sub.opd_codes else ''}", err=True)
        if not secret:
            click.echo("signing secret (give it to the receiver; not shown again):", err=True)
            click.echo(sub.secret)
        return 0

    return run_async(go())


@subscription.command("list", short_help="Every subscription (secrets shown masked).")
@pass_settings
def subscription_list(settings: Settings) -> int:
    """Every subscription: on/off, URL, events, OPDs, and the start of its secret."""

    async def go() -> int:
        async with service_pool(settings, "notify", migrations=migrations_of("notify")) as db:
            subs = await admin.list_subscriptions(db, box=admin.box_of(settings))
        for s in subs:
            click.echo(f"{s.name:<20} {'on ' if s.enabled else 'off'} {s.url:<45} "
                       f"{','.join(s.event_types):<40} opd={','.join(s.opd_codes or ('*',))} "
                       f"secret={s.secret[:10]}…")
        return 0

    return run_async(go())


@subscription.command("rotate-secret", short_help="A new signing secret; the old one overlaps.")
@click.argument("name")
@click.option("--overlap-hours", type=click.FloatRange(min=0), default=24.0, show_default=True,
              help="how long webhooks carry a signature with the old secret too")
@click.option("--secret", help="whsec_… (default: generated and printed once)")
@pass_settings
def subscription_rotate(settings: Settings, name: str, overlap_hours: float,
                        secret: str | None) -> int:
    """Give subscription NAME a new signing secret, printed once (stdout).

    For --overlap-hours every webhook carries two `v1,` signatures (new and old secret, as
    Standard Webhooks allows), so the receiver can switch to the new secret without a gap."""

    async def go() -> int:
        async with service_pool(settings, "notify", migrations=migrations_of("notify")) as db:
            try:
                new = await admin.rotate_secret(db, name, overlap_s=overlap_hours * 3600,
                                                secret=secret, box=admin.box_of(settings))
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--secret") from exc
        if new is None:
            click.echo(f"no subscription named '{name}'", err=True)
            return 1
        click.echo(f"subscription '{name}': new secret active; the old one also signs for"
                   f" {overlap_hours:g} h", err=True)
        if not secret:
            click.echo(new)
        return 0

    return run_async(go())


def _change(settings: Settings, name: str, action: str) -> int:
    async def go() -> int:
        async with service_pool(settings, "notify", migrations=migrations_of("notify")) as db:
            if action == "remove":
                ok = await admin.remove_subscription(db, name)
            else:
                ok = await admin.set_subscription_enabled(db, name, action == "resume")
        if not ok:
            click.echo(f"no subscription named '{name}'", err=True)
            return 1
        click.echo(f"subscription '{name}': {action} done")
        return 0

    return run_async(go())


@subscription.command("pause")
@click.argument("name")
@pass_settings
def subscription_pause(settings: Settings, name: str) -> int:
    """Pause NAME: no deliveries are created for it until it is resumed."""
    return _change(settings, name, "pause")


@subscription.command("resume")
@click.argument("name")
@pass_settings
def subscription_resume(settings: Settings, name: str) -> int:
    """Resume NAME; running dispatchers are woken."""
    return _change(settings, name, "resume")


@subscription.command("remove", short_help="Delete a subscription; its unfinished deliveries dead-letter.")
@click.argument("name")
@pass_settings
def subscription_remove(settings: Settings, name: str) -> int:
    """Delete NAME; its unfinished deliveries become dead-lettered (replayable if re-added)."""
    return _change(settings, name, "remove")


# -- dead-lettered deliveries --------------------------------------------------------------


@click.group("webhook", short_help="Dead-lettered webhook deliveries (notify).")
def webhook() -> None:
    """Dead-lettered webhook deliveries (notify): list them, send them again."""


@webhook.command("dead-letters", short_help="Dead-lettered deliveries, oldest first.")
@click.option("--subscription", "subscription_name", metavar="NAME", help="only this subscription's")
@pass_settings
def webhook_dead_letters(settings: Settings, subscription_name: str | None) -> int:
    """Dead-lettered deliveries, oldest first: number, event, attempts, last error."""

    async def go() -> int:
        async with service_pool(settings, "notify", migrations=migrations_of("notify")) as db:
            rows = await admin.list_dead_lettered(db, subscription=subscription_name)
        for d in rows:
            click.echo(f"#{d.id:<6} {d.subscription:<18} {d.event_type:<32} complaint={d.complaint_id} "
                       f"attempts={d.attempts} last={d.last_status_code or '-'} "
                       f"{(d.last_error or '')[:60]}")
        click.echo(f"{len(rows)} dead-lettered deliveries", err=True)
        return 0

    return run_async(go())


@webhook.command("replay", short_help="Send a dead-lettered delivery (or --all) again.")
@click.argument("delivery_id", metavar="[ID]", type=int, required=False)
@click.option("--all", "replay_all", is_flag=True, help="every dead-lettered delivery")
@click.option("--subscription", "subscription_name", metavar="NAME", help="with --all: only this one's")
@pass_settings
def webhook_replay(settings: Settings, delivery_id: int | None, replay_all: bool,
                   subscription_name: str | None) -> int:
    """Send dead-lettered delivery ID (or --all) again, with a fresh round of attempts."""

    async def go() -> int:
        async with service_pool(settings, "notify", migrations=migrations_of("notify")) as db:
            if replay_all:
                n = await admin.replay_all_dead_lettered(db, subscription=subscription_name)
                click.echo(f"{n} deliveries queued again")
                return 0
            if delivery_id is None:
                click.echo("give a delivery number or --all", err=True)
                return 2
            ok = await admin.replay_dead_lettered(db, delivery_id)
        click.echo(f"delivery #{delivery_id} queued again" if ok
                   else f"no dead-lettered delivery #{delivery_id}")
        return 0 if ok else 1

    return run_async(go())


COMMANDS = (subscription, webhook)

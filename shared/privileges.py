"""Least privilege: who may do what, as data (``sp4n bootstrap`` applies it).

PostgreSQL: one owner role (``{prefix}_owner``) owns every schema and runs ``sp4n migrate``;
one login role per service (``{prefix}_{service}``) has USAGE on its own schema and DML on
its own tables and sequences only (also those later migrations create, through default
privileges), no CREATE anywhere, no TEMP, no other schema.

RabbitMQ (one vhost): one user per service (``{prefix}-{service}``) that may configure,
write and read only its own queues (``{ns}.{service}.…``, DLQs included), write the events
exchange (its own routing keys only: topic permissions), the dead-letter exchange and the
retry exchange, and read (bind from) the events exchange — intake also the inbound one.
One user for migrations (``{prefix}-migrate``: configure/write/read ``{ns}.…``, declares the
topology, publishes no event). One user per portal (``{prefix}-portal-{source}``: write
``{ns}.inbound`` only); intake takes a submission's source from that user name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.events import EVENT_MODELS

SERVICES = ("intake", "routing", "sla", "notify")
PREFIX_PATTERN = r"^[a-z][a-z0-9_]{0,30}$"

# Which service publishes which events (the events exchange's topic permissions). Invariant:
# every event of ``shared.events`` has a publisher here (tests/unit/test_privileges.py).
PUBLISHES: dict[str, tuple[str, ...]] = {
    # intake: the submission and every lifecycle action, a manual disposition included.
    "intake": ("complaint.submitted", "complaint.verified", "complaint.deferred",
               "complaint.resumed", "complaint.archived", "complaint.forwarded",
               "complaint.routed", "complaint.returned", "complaint.responded",
               "complaint.reporter_replied", "complaint.closed", "complaint.reopened",
               "complaint.rated", "complaint.reclassified", "complaint.withdrawn"),
    "routing": ("complaint.routed", "complaint.triage_required",
                "complaint.routing_suggested", "complaint.duplicate_suspected"),
    "sla": tuple(n for n in EVENT_MODELS if n.startswith("sla.")),
    "notify": tuple(n for n in EVENT_MODELS if n.startswith("notification.")),
}


@dataclass(frozen=True)
class BrokerGrant:
    """One broker user's permissions on the vhost, and its topic permission on the events
    exchange (``topic_write``/``topic_read`` regexes of routing keys)."""

    user: str
    configure: str
    write: str
    read: str
    topic_write: str
    topic_read: str = ".*"


def check_prefix(prefix: str) -> str:
    if not re.fullmatch(PREFIX_PATTERN, prefix):
        raise ValueError(f"prefix {prefix!r}: lower-case letters, digits and _ only, "
                         "starting with a letter (at most 31 characters)")
    return prefix


def owner_role(prefix: str) -> str:
    return f"{prefix}_owner"


def service_role(prefix: str, service: str) -> str:
    return f"{prefix}_{service}"


def broker_user(prefix: str, service: str) -> str:
    return f"{prefix}-{service}"


def portal_user_prefix(prefix: str) -> str:
    """What ``settings.intake.portal_user_prefix`` must be for this bootstrap prefix."""
    return f"{prefix}-portal-"


def portal_user(prefix: str, source: str) -> str:
    return f"{portal_user_prefix(prefix)}{source}"


def _alternatives(names: tuple[str, ...]) -> str:
    return "^(" + "|".join(re.escape(n) for n in sorted(set(names))) + ")$"


def service_grant(prefix: str, ns: str, service: str) -> BrokerGrant:
    n, own = re.escape(ns), re.escape(f"{ns}.{service}.")
    # retry: the exchange the retry queues hang off (declared by the topology, if any).
    shared_exchanges = "events|dlx|retry"
    readable = shared_exchanges + ("|inbound" if service == "intake" else "")
    return BrokerGrant(
        user=broker_user(prefix, service),
        configure=f"^{own}",
        write=f"^({own}.*|{n}\\.({shared_exchanges}))$",
        read=f"^({own}.*|{n}\\.({readable}))$",
        topic_write=_alternatives(PUBLISHES[service]),
    )


def migrate_grant(prefix: str, ns: str) -> BrokerGrant:
    n = re.escape(f"{ns}.")
    return BrokerGrant(user=broker_user(prefix, "migrate"), configure=f"^{n}", write=f"^{n}",
                       read=f"^{n}", topic_write="^$")


def portal_grant(prefix: str, ns: str, source: str) -> BrokerGrant:
    return BrokerGrant(user=portal_user(prefix, source), configure="^$",
                       write=f"^{re.escape(ns)}\\.inbound$", read="^$", topic_write="^$")


def events_exchange_name(ns: str) -> str:
    return f"{ns}.events"

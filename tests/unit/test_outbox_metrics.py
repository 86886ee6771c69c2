"""The outbox and retention metrics every service exports, and that the alert rules and the
dashboard name only those that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from shared.service import ServiceRuntime
from shared.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _exported() -> set[str]:
    runtime = ServiceRuntime("intake", Settings(), Path("no-migrations"), title="metrics")
    return {s.name for m in runtime.registry.collect() for s in m.samples} | {
        m.name for m in runtime.registry.collect()}


def test_every_service_exports_the_outbox_backlog_gauges():
    names = _exported()
    assert {"sp4n_outbox_unsent", "sp4n_outbox_oldest_unsent_age_seconds", "sp4n_outbox_set_aside",
            "sp4n_outbox_published_total", "sp4n_outbox_set_aside_events_total"} <= names


def test_alerts_and_dashboard_name_only_outbox_and_retention_metrics_that_exist():
    alerts = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    dashboard = (DEPLOY / "grafana" / "dashboards" / "sp4n.json").read_text()
    pattern = r"sp4n_(?:outbox|retention)_[a-z_]+"
    used = set(re.findall(pattern, alerts)) | set(re.findall(pattern, dashboard))
    known = _exported() | {"sp4n_retention_pruned_total"}  # labelled: no sample until a prune
    assert used and used <= known, used - known
    rules = {r["alert"] for g in yaml.safe_load(alerts)["groups"] for r in g["rules"]}
    assert {"SP4NOutboxBacklogOld", "SP4NOutboxRowsSetAside"} <= rules
    titles = {p["title"] for p in json.loads(dashboard)["panels"]}
    assert "Oldest unpublished outbox row (age)" in titles

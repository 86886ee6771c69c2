"""The deploy files give each service its own credentials and only the connections it needs.

Kubernetes: rendered with ``kubectl kustomize`` when kubectl is installed, else the listed
resources are read as they are (the kustomization has no patches). Compose: the YAML itself
(anchors and merge keys resolved by the loader); ``docker compose config -q`` validates it
further where Docker Compose is installed (deploy/README.md)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SERVICES = ("intake", "routing", "sla", "notify")


def k8s_documents() -> list[dict]:
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True,
                             check=True).stdout
        return [d for d in yaml.safe_load_all(out) if d]
    resources = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    return [d for r in resources for d in yaml.safe_load_all((K8S / r).read_text()) if d]


def _secret_refs(pod_spec: dict) -> set[str]:
    return {e["secretRef"]["name"] for c in pod_spec["containers"] for e in c.get("envFrom", ())
            if "secretRef" in e}


def test_each_workload_reads_only_its_own_secret_and_runs_in_production_mode():
    docs = k8s_documents()
    workloads = {d["metadata"]["name"]: d for d in docs if d["kind"] in ("Deployment", "Job")}
    for svc in SERVICES:
        spec = workloads[f"sp4n-{svc}"]["spec"]["template"]["spec"]
        assert _secret_refs(spec) == {f"sp4n-{svc}"}
    assert _secret_refs(workloads["sp4n-migrate"]["spec"]["template"]["spec"]) == {"sp4n-migrate"}
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    assert config["data"]["SP4N_ENV"] == "production"
    assert not any("SECRET" in k or "KEY" in k or "URL" in k for k in config["data"])
    examples = {d["metadata"]["name"]: d["stringData"] for d in
                yaml.safe_load_all((K8S / "secret.example.yaml").read_text()) if d}
    for svc in (*SERVICES, "migrate"):
        assert {"SP4N_DATABASE_URL", "SP4N_AMQP_URL"} <= set(examples[f"sp4n-{svc}"])
        has_intake_secrets = any(k.startswith("SP4N_INTAKE__") for k in examples[f"sp4n-{svc}"])
        assert has_intake_secrets == (svc == "intake"), svc
        has_notify_secrets = any(k.startswith("SP4N_NOTIFY__") for k in examples[f"sp4n-{svc}"])
        assert has_notify_secrets == (svc == "notify"), svc
    assert "sp4n-secrets" not in examples


def test_network_policies_deny_by_default_and_let_only_notify_out_on_443():
    policies = {d["metadata"]["name"]: d["spec"] for d in k8s_documents()
                if d["kind"] == "NetworkPolicy"}
    deny = policies["sp4n-default-deny"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    web = [p for p in policies.values()
           if any(port.get("port") == 443 for rule in p.get("egress", ()) for port in rule["ports"])]
    assert [p["podSelector"] for p in web] == [{"matchLabels": {"app.kubernetes.io/component": "notify"}}]
    blocked = web[0]["egress"][0]["to"][0]["ipBlock"]["except"]
    assert {"10.0.0.0/8", "169.254.0.0/16", "192.168.0.0/16"} <= set(blocked)
    ingress_8000 = [p for p in policies.values() for rule in p.get("ingress", ())
                    if any(port["port"] == 8000 for port in rule["ports"])]
    assert len(ingress_8000) == 2  # the ingress controller to intake, Prometheus to all


def test_compose_gives_each_service_its_own_credentials_volume_and_intake_its_key():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for svc in SERVICES:
        s = compose[svc]
        own = f"/var/lib/sp4n/credentials/{svc}/{svc}.env"
        assert s["command"][:3] == ["sp4n", "--env-file", own]
        creds = [v for v in s.get("volumes", ()) if "sp4n-credentials" in v]
        assert creds == [f"sp4n-credentials-{svc}:/var/lib/sp4n/credentials/{svc}:ro"]
        env = s["environment"]
        assert "SP4N_DATABASE_URL" not in env and "SP4N_AMQP_URL" not in env
        assert "SP4N_REPORTER_REF_KEY" not in env
        assert ("SP4N_INTAKE__REPORTER_REF_KEY" in env) == (svc == "intake")
        assert ("SP4N_NOTIFY__SECRETS_KEY" in env) == (svc == "notify")
        assert env["SP4N_AUTO_MIGRATE"] == "false"
        assert s["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert compose["migrate"]["depends_on"]["bootstrap"]["condition"] == "service_completed_successfully"
    assert "bootstrap" in compose["bootstrap"]["command"]

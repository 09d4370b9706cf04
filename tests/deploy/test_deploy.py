"""deploy/: every manifest parses; every setting it gives a member is one ``hacoord serve``
accepts, and together they are settings a member starts with (checked the way ``serve`` checks
them, files included); ports and probes agree; the alert rules and the dashboard's queries pass
``promtool``."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from hacoord.cli.serve import member_settings, serve
from hacoord.server.certs import ensure_ca, issue
from hacoord.server.settings import ensure_admin_token, ensure_secret

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
#: Every environment variable ``hacoord serve`` reads, and its option.
SERVE_ENV = {p.envvar: p for p in serve.params if isinstance(p, click.Option) and p.envvar}
FILE_KEYS = {"HACOORD_SECRET_FILE": "secret", "HACOORD_ADMIN_TOKEN_FILE": "token",
             "HACOORD_TLS_CERT": "cert", "HACOORD_TLS_KEY": "key", "HACOORD_TLS_CA": "ca"}


def parse_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines as systemd's EnvironmentFile reads them (comments, quotes)."""
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = " ".join(shlex.split(value))
    return env


def starts_with(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The settings a member would start with under ``env`` (its files made for real under
    ``tmp_path``, as an operator would make them)."""
    unknown = sorted(set(env) - set(SERVE_ENV))
    assert not unknown, f"hacoord serve reads no {unknown}"
    ca = ensure_ca(tmp_path / "ca")
    cert, key = issue(ca, tmp_path / "member", "member", ["member"])
    files = {"secret": ensure_secret(tmp_path / "secret"),
             "token": ensure_admin_token(tmp_path / "admin.token"),
             "cert": cert, "key": key, "ca": ca[0]}
    for name in list(os.environ):
        if name.startswith("HACOORD_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, str(files[FILE_KEYS[name]]) if name in FILE_KEYS else value)
    monkeypatch.setenv("HACOORD_DATA_DIR", str(tmp_path / "data"))
    params = serve.make_context("serve", []).params
    return member_settings(**params)


# --- systemd ---------------------------------------------------------------------------------

def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
        else:
            key, _, value = line.partition("=")
            sections[current].setdefault(key, []).append(value)
    return sections


def test_the_systemd_unit_runs_serve_hardened_and_restarts_on_failure() -> None:
    service = unit(DEPLOY / "systemd" / "hacoord.service")["Service"]
    assert service["ExecStart"] == ["/opt/hacoord/bin/hacoord serve"]
    assert service["EnvironmentFile"] == ["/etc/hacoord/hacoord.env"]
    assert service["User"] == ["hacoord"] and service["Restart"] == ["on-failure"]
    assert service["ProtectSystem"] == ["strict"] and service["NoNewPrivileges"] == ["yes"]
    assert int(service["LimitNOFILE"][0]) >= 65536
    data_dir = parse_env_file(DEPLOY / "systemd" / "hacoord.env")["HACOORD_DATA_DIR"]
    assert service["ReadWritePaths"] == [data_dir]  # the only writable place, under ProtectSystem
    assert data_dir == "/var/lib/" + service["StateDirectory"][0]


def test_the_systemd_environment_starts_a_member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = parse_env_file(DEPLOY / "systemd" / "hacoord.env")
    settings = starts_with(env, tmp_path, monkeypatch)
    assert settings.member_id == "m1" and [p.id for p in settings.peers] == ["m2", "m3"]
    assert settings.api_url == "https://10.0.0.1:7400" and settings.tls_cert is not None


# --- compose ---------------------------------------------------------------------------------

def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())


@pytest.mark.parametrize("member", ["m1", "m2", "m3"])
def test_each_compose_member_starts_with_its_environment(member: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    service = compose()["services"][member]
    env = {k: str(v) for k, v in service["environment"].items()}
    settings = starts_with(env, tmp_path, monkeypatch)
    assert settings.member_id == member
    assert {p.id for p in settings.peers} == {"m1", "m2", "m3"} - {member}
    api_port = int(env["HACOORD_API_ADDRESS"].rsplit(":", 1)[1])
    assert service["ports"] == [f"127.0.0.1:{7400 + int(member[1])}:{api_port}"]
    assert f":{api_port}/readyz" in " ".join(service["healthcheck"]["test"])
    # The certificate init makes names the member as its peers call it.
    init = compose()["services"]["init"]["command"][0]
    assert '--host "$$m"' in init and service["hostname"] == member


def test_the_compose_image_is_built_from_this_checkout() -> None:
    build = compose()["services"]["init"]["build"]
    assert (DEPLOY / "compose" / build["context"] / build["dockerfile"]).resolve() == \
        (DEPLOY / "compose" / "Dockerfile").resolve()
    dockerfile = (DEPLOY / "compose" / "Dockerfile").read_text()
    assert "USER hacoord" in dockerfile and 'ENTRYPOINT ["hacoord"]' in dockerfile
    for copied in re.findall(r"^COPY (.+) /src/", dockerfile, re.M):
        for name in copied.split():
            assert (DEPLOY.parent / name).exists(), name


# --- kubernetes ------------------------------------------------------------------------------

def manifests() -> dict[str, dict[str, Any]]:
    docs = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            docs[f"{doc['kind']}/{doc['metadata'].get('name', '')}"] = doc
    return docs


def pod_env(container: dict[str, Any], pod: str, namespace: str = "hacoord") -> dict[str, str]:
    """The container's environment as the kubelet makes it for ``pod``: field references filled
    in, ``$(VAR)`` expanded from the variables defined before."""
    fields = {"metadata.name": pod, "metadata.namespace": namespace}
    env: dict[str, str] = {}
    for item in container["env"]:
        if "valueFrom" in item:
            env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], item["value"])
    return env


@pytest.mark.parametrize("ordinal", [0, 1, 2])
def test_every_statefulset_pod_starts_a_member(ordinal: int, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    sts = manifests()["StatefulSet/hacoord"]
    pod = f"hacoord-{ordinal}"
    container = sts["spec"]["template"]["spec"]["containers"][0]
    env = {k: v for k, v in pod_env(container, pod).items() if k.startswith("HACOORD_")}
    settings = starts_with(env, tmp_path, monkeypatch)
    assert settings.raft_address == f"{pod}.hacoord-peers.hacoord.svc.cluster.local:7500"
    assert settings.member_id == pod
    assert {p.id for p in settings.peers} == {f"hacoord-{k}" for k in range(3)} - {pod}
    assert sts["spec"]["replicas"] == 3 and sts["spec"]["podManagementPolicy"] == "Parallel"


def test_kubernetes_ports_probes_services_and_budget_agree() -> None:
    docs = manifests()
    sts = docs["StatefulSet/hacoord"]
    spec = sts["spec"]["template"]["spec"]
    container = spec["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    assert int(env["HACOORD_API_ADDRESS"].rsplit(":", 1)[1]) == ports["api"]
    assert int(env["HACOORD_RAFT_ADDRESS"].rsplit(":", 1)[1]) == ports["raft"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "api", "scheme": "HTTPS"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "api", "scheme": "HTTPS"}
    peers = docs["Service/hacoord-peers"]
    assert sts["spec"]["serviceName"] == "hacoord-peers" and peers["spec"]["clusterIP"] == "None"
    assert peers["spec"]["publishNotReadyAddresses"] is True
    assert {p["targetPort"] for p in peers["spec"]["ports"]} == set(ports)
    assert ".$(PEERS_DOMAIN):" in env["HACOORD_RAFT_ADDRESS"]
    assert env["PEERS_DOMAIN"].startswith(peers["metadata"]["name"] + ".")
    labels = spec and sts["spec"]["template"]["metadata"]["labels"]
    for name in ("Service/hacoord", "Service/hacoord-peers"):
        assert docs[name]["spec"]["selector"].items() <= labels.items()
    budget = docs["PodDisruptionBudget/hacoord"]["spec"]
    assert budget["maxUnavailable"] == 1 and budget["selector"]["matchLabels"].items() <= labels.items()
    # Secrets come from Secrets, copied 0600 into a memory volume the member reads.
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["cluster-secret"]["secret"]["secretName"] == "hacoord-cluster"
    assert volumes["credentials"]["emptyDir"]["medium"] == "Memory"
    copy = spec["initContainers"][0]["args"][0]
    for name in ("HACOORD_SECRET_FILE", "HACOORD_ADMIN_TOKEN_FILE", "HACOORD_TLS_KEY"):
        assert "install -m 0600" in copy and Path(env[name]).name in copy
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    # The member's data directory is inside the volume, not its root (root's, under fsGroup).
    assert Path(env["HACOORD_DATA_DIR"]).parent == Path(mounts["data"])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())["resources"]
    present = sorted(p.name for p in (DEPLOY / "kubernetes").glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present


# --- prometheus ------------------------------------------------------------------------------

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="no promtool (apt-get install prometheus)")


def exported_metrics() -> set[str]:
    names = set()
    for path in (Path(__file__).resolve().parents[2] / "hacoord").rglob("*.py"):
        names.update(re.findall(r'"(hacoord_[a-z_]+)"', path.read_text()))
    return names


def rule_metrics(expr: str) -> set[str]:
    found = set(re.findall(r"\b(hacoord_[a-z_]+)", expr))
    return {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in found}


def test_rules_and_dashboard_use_only_exported_metrics() -> None:
    exported = exported_metrics()
    rules = yaml.safe_load((DEPLOY / "prometheus" / "hacoord-rules.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((DEPLOY / "prometheus" / "hacoord-dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for expr in exprs:
        assert rule_metrics(expr) <= exported, expr
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {"HacoordNoLeader", "HacoordMemberNotReady", "HacoordLeaderChanges",
            "HacoordPartitionsUnavailable", "HacoordPartitionsUnderReplicated", "HacoordNodesDown",
            "HacoordEventLoopLag", "HacoordDiskAlmostFull"} <= alerts


@needs_promtool
def test_promtool_accepts_the_rules_and_the_dashboard_queries(tmp_path: Path) -> None:
    rules = DEPLOY / "prometheus" / "hacoord-rules.yml"
    checked = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    dashboard = json.loads((DEPLOY / "prometheus" / "hacoord-dashboard.json").read_text())
    recording = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel_{p['id']}", "expr": t["expr"]}
        for p in dashboard["panels"] for t in p["targets"]]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(recording))
    checked = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr

"""Cheap, deterministic checks of deploy/: YAML parses, probes, hardening, non-root images."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge import config_loader as configmod
from bridge import service
from bridge.config import Listen
from tests.support import missing

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
UNIT = DEPLOY / "systemd" / "od-bridge.service"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
ENV = {"AMQP_URL": "amqp://u:p@rabbitmq:5672/", "OD_CUSTOMER_KEY": "k", "OD_DEVELOPER_KEY": "d"}


def k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in k8s_docs() if d.get("kind") == kind]


def test_every_manifest_has_the_basics() -> None:
    kinds = {d["kind"] for d in k8s_docs()}
    assert {"ConfigMap", "Secret", "Service", "StatefulSet", "PodDisruptionBudget"} <= kinds
    for doc in k8s_docs():
        if doc["kind"] == "Kustomization":
            continue
        assert doc["apiVersion"] and doc["metadata"]["name"], doc["kind"]


def test_workload_probes_security_and_spool() -> None:
    (sts,) = by_kind("StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # The spool lives on the pod's own claim; the config comes from the ConfigMap.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]] == "/var/lib/od-bridge"
    assert container["envFrom"][0]["secretRef"]["name"] == by_kind("Secret")[0]["metadata"]["name"]
    # Selectors line up: Services and the PDB pick the StatefulSet's pods.
    labels = sts["spec"]["template"]["metadata"]["labels"]
    for svc in by_kind("Service"):
        assert svc["spec"]["selector"].items() <= labels.items()
    (pdb,) = by_kind("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert sts["spec"]["serviceName"] in {s["metadata"]["name"] for s in by_kind("Service")}


def test_embedded_configs_load() -> None:
    (cm,) = by_kind("ConfigMap")
    k8s = configmod.parse(cm["data"]["config.yaml"], env=ENV)
    assert str(k8s.spool.path).startswith("/var/lib/od-bridge/")
    compose = configmod.load(DEPLOY / "docker" / "config.yaml", env=ENV)
    assert str(compose.spool.path).startswith("/var/lib/od-bridge/")


def test_compose_file() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3-management")
    emulate = services["emulator"]["command"]
    assert emulate[:1] == ["emulate"]
    # The emulator sends wall-clock times in the zone the bridge reads them in.
    config = configmod.load(DEPLOY / "docker" / "config.yaml", env=ENV)
    zone = emulate[emulate.index("--timezone") + 1]
    assert zone == str(config.customers[0].timezone)
    bridge = services["bridge"]
    assert bridge["command"][0] == "serve"
    assert "emulator:30223" in bridge["environment"]["OD_API_URL"]
    assert bridge["read_only"] is True


def test_dockerfile_is_slim_non_root_and_health_checked() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\s*$", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    health = re.search(r"^HEALTHCHECK .*\n(?:.*\\\n)*.*", text, re.M)
    assert health and "/healthz" in text and "python" in health.group(0)
    assert "curl" not in health.group(0)


def test_dockerfile_installs_pinned_dependencies_before_the_code() -> None:
    text = DOCKERFILE.read_text()
    build = text.split("\nFROM ", 2)[1]  # the build stage
    deps = build.index("-c constraints.txt -r requirements.txt")
    assert build.index("COPY pyproject.toml constraints.txt ./") < deps < build.index("COPY bridge")
    assert re.search(r"COPY bridge \./bridge\nRUN \S+ install --no-compile --no-deps \. ", build)
    # The one-liner that lists the dependencies, run here: pyproject's runtime list + `fast`.
    snippet = re.search(r'python -c "(.+?)" > requirements\.txt', build)
    assert snippet
    listed = subprocess.run(
        [sys.executable, "-c", snippet.group(1)],  # sh keeps the \n in "…" as is
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.splitlines()  # fmt: skip
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert listed == project["dependencies"] + project["optional-dependencies"]["fast"]
    # What the build copies is in the build context.
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = [line.strip() for line in lines if not line.startswith("#")]
    for name in ("pyproject.toml", "constraints.txt", "README.md", "LICENSE", "bridge"):
        assert (ROOT / name).exists() and name not in ignored, name


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_systemd_unit_hardening() -> None:
    service = _unit()["Service"]
    assert service["User"] == "od-bridge"
    assert service["ProtectSystem"] == "strict"
    assert service["StateDirectory"] == "od-bridge"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices",
                "RestrictSUIDSGID", "LockPersonality"):  # fmt: skip
        assert service[key] == "yes", key
    assert service["CapabilityBoundingSet"] == ""
    assert "serve" in service["ExecStart"]


def test_systemd_analyze_verify_and_exposure(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        missing("systemd-analyze not installed (apt-get install systemd)")
    # verify insists that ExecStart exists: point it at this venv's entry point.
    exe = Path(sys.executable).with_name("od-bridge")
    unit = tmp_path / "od-bridge.service"
    unit.write_text(UNIT.read_text().replace("/opt/od-bridge/venv/bin/od-bridge", str(exe)))
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", str(unit)],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert security.returncode == 0, security.stdout[-500:]
    exposure = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert exposure and float(exposure.group(1)) <= 2.0, security.stdout[-300:]


def test_manifests_against_kubernetes_schemas() -> None:
    kv = (
        pytest.importorskip(
            "kubernetes_validate", reason="pip install -e '.[deploy]' for the schema check"
        )
        if os.environ.get("CI") != "true"
        else __import__("kubernetes_validate")
    )
    for doc in k8s_docs():
        if doc["kind"] == "Kustomization":
            continue
        for version in ("1.30.0", "1.37.0"):
            kv.validate(doc, version, strict=True)


def test_example_config_loads_and_documents_the_security_keys() -> None:
    example = ROOT / "config.example.yaml"
    config = configmod.load(example, env={})
    assert config.listen.auth_failure_limit is not None
    text = example.read_text()
    for key in ("auth_failure_limit:", "max_failures:", "window_s:", "max_clients:", "tls:",
                "allowed_networks:", "redact:", "fields:", "extra_keys:"):  # fmt: skip
        assert key in text, key


def test_every_stop_timeout_covers_the_whole_shutdown() -> None:
    """Grace (still accepting), in-flight requests, a sync pass, the spool drain: then SIGKILL."""
    (cm,) = by_kind("ConfigMap")
    grace = configmod.parse(cm["data"]["config.yaml"], env=ENV).listen.shutdown_grace_s
    assert grace > 0  # rolling updates drop nothing only with a grace
    assert grace == Listen().shutdown_grace_s  # systemd and compose run with the default
    shutdown = grace + service.IN_FLIGHT_ON_STOP_S + 2 * service.DRAIN_ON_STOP_S
    (sts,) = by_kind("StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    # Kubernetes counts the preStop hook in terminationGracePeriodSeconds.
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + shutdown + 10
    assert int(_unit()["Service"]["TimeoutStopSec"]) >= shutdown + 10
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert int(compose["services"]["bridge"]["stop_grace_period"].rstrip("s")) >= shutdown + 10


def test_the_spool_drain_job_mounts_a_replicas_claim_like_the_statefulset() -> None:
    (job,) = by_kind("Job")
    (sts,) = by_kind("StatefulSet")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:2] == ["spool", "drain"]
    assert "--spool" in container["args"]
    claim = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    template = sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    # StatefulSet claims are named <template>-<statefulset>-<ordinal>.
    assert claim["persistentVolumeClaim"]["claimName"].startswith(
        f"{template}-{sts['metadata']['name']}-"
    )
    spool_path = container["args"][container["args"].index("--spool") + 1]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert spool_path.startswith(mounts[claim["name"]] + "/")
    # Not one of the Services' endpoints.
    labels = job["spec"]["template"]["metadata"]["labels"]
    for svc in by_kind("Service"):
        assert not svc["spec"]["selector"].items() <= labels.items()
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert "spool-drain-job.yaml" not in kustomization["resources"]  # a runbook, applied by hand

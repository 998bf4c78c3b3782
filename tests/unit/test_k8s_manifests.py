"""deploy/k8s: up to date with the generator, valid against the Kubernetes API schemas
(kubernetes-validate, offline), complete for every service, and each Deployment's
environment accepted by that service's real Settings.

The overlays are also rendered with `kubectl kustomize` (kubectl's built-in kustomize,
offline) when kubectl is installed, as it is on this project's machines; no kustomize
ships on PyPI, so without kubectl that test is skipped and the checks on each base file
and on the kustomizations (missing resources, secrets never generated) remain."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from shared.launcher import SERVICES
from shared.provision import provision
from shared.settings import Environment
from tests.unit.test_compose_file import settings_class

pytestmark = pytest.mark.unit

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
K8S_VERSION = "1.33.0"


def generator() -> Any:
    spec = importlib.util.spec_from_file_location("k8s_generate", K8S / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["k8s_generate"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


GEN = generator()


def base_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((K8S / "base").rglob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


DOCS = base_docs()


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in DOCS if d["kind"] == kind}


def test_committed_manifests_match_the_generator(tmp_path: Path) -> None:
    written = GEN.write(tmp_path)
    for path in written:
        committed = K8S / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} missing: run make k8s"
        assert committed.read_text() == path.read_text(), f"{committed} stale: run make k8s"
    base_files = {p.relative_to(K8S) for p in (K8S / "base").rglob("*.yaml")}
    assert base_files == {p.relative_to(tmp_path) for p in written if "base" in p.parts}


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_valid_against_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_schema_check_catches_a_broken_manifest() -> None:
    broken = next(yaml.safe_load_all((K8S / "base" / "services" / "gateway.yaml").read_text()))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    broken = next(yaml.safe_load_all((K8S / "base" / "services" / "gateway.yaml").read_text()))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_every_service_is_deployed_with_probes_resources_and_policies() -> None:
    deployments, hpas = by_kind("Deployment"), by_kind("HorizontalPodAutoscaler")
    pdbs, policies = by_kind("PodDisruptionBudget"), by_kind("NetworkPolicy")
    (nats,) = [d for d in DOCS if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "nats"]
    nats_containers = {c["name"]: c for c in nats["spec"]["template"]["spec"]["containers"]}
    assert nats["spec"]["template"]["spec"]["shareProcessNamespace"] is True
    for name in SERVICES:
        if name == "access":
            container = nats_containers["access"]  # beside nats-server, not a Deployment
        else:
            container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
            assert name in pdbs and name in policies
            assert (name in hpas) == (name != "audit"), name
        assert container["command"] == ["python", "-m", f"services.{name}"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "access" not in hpas
    # The single writer: one pod, the old one stopped (lease released) before the new one.
    assert deployments["audit"]["spec"]["replicas"] == 1
    assert deployments["audit"]["spec"]["strategy"] == {"type": "Recreate"}
    assert deployments["audit"]["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
        "tenantry-audit:"
    )
    assert {"nats", "qdrant", "clickhouse"} <= set(by_kind("StatefulSet"))
    assert "default-deny" in policies


def test_kustomizations_name_existing_files_and_generate_every_secret_used() -> None:
    base = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    for resource in base["resources"]:
        assert (K8S / "base" / resource).is_file(), resource
    referenced = {
        volume["secret"]["secretName"]
        for doc in DOCS
        if doc["kind"] in ("Deployment", "StatefulSet")
        for volume in doc["spec"]["template"]["spec"].get("volumes", [])
        if "secret" in volume
    }
    for overlay in ("dev", "production"):
        kustomization = yaml.safe_load(
            (K8S / "overlays" / overlay / "kustomization.yaml").read_text()
        )
        for resource in kustomization["resources"]:
            assert (K8S / "overlays" / overlay / resource).exists(), (overlay, resource)
        generated = {s["name"] for s in kustomization["secretGenerator"]}
        assert referenced <= generated, (overlay, referenced - generated)


def test_secret_files_the_overlays_expect_are_what_provision_writes(tmp_path: Path) -> None:
    provision(tmp_path / "state", SERVICES)
    kustomization = yaml.safe_load(
        (K8S / "overlays" / "production" / "kustomization.yaml").read_text()
    )
    for secret in kustomization["secretGenerator"]:
        for entry in secret["files"]:
            source = entry.split("=", 1)[-1]
            assert (tmp_path / source).is_file(), (secret["name"], source)


def pod_env(container: dict[str, Any], secrets: Path) -> dict[str, str]:
    (config,) = [d for d in DOCS if d["kind"] == "ConfigMap"]
    env = dict(config["data"])
    for item in container["env"]:
        if "value" in item:
            value = item["value"]
            env[item["name"]] = value.replace("/run/secrets/tenantry", str(secrets))
    return env


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("k8s-state") / "state"
    provision(root, SERVICES)  # bcrypt for every user: once per module
    return root


@pytest.mark.parametrize("name", SERVICES)
def test_settings_accept_the_pod_environment(
    name: str, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = state / "secrets" / "services" / name
    if name == "access":
        (nats,) = [
            d for d in DOCS if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "nats"
        ]
        (container,) = [
            c for c in nats["spec"]["template"]["spec"]["containers"] if c["name"] == "access"
        ]
    else:
        container = by_kind("Deployment")[name]["spec"]["template"]["spec"]["containers"][0]
    for key in list(os.environ):
        monkeypatch.delenv(key)
    for key, value in pod_env(container, secrets).items():
        monkeypatch.setenv(key, value)
    settings = settings_class(name)()
    assert settings.environment is Environment.PRODUCTION
    assert settings.nats_user == f"svc-{name}"
    assert settings.nats_password is not None
    assert settings.http_port == container["ports"][0]["containerPort"]


KUBECTL = shutil.which("kubectl")


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with its built-in kustomize) not installed")
@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_overlays_render_with_kustomize_and_validate(overlay: str, tmp_path: Path) -> None:
    """`kubectl kustomize` (offline, no cluster) renders the overlay with secrets made by
    provision, and every rendered object is valid."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("state"))
    provision(copy / "overlays" / overlay / "state", SERVICES)
    assert KUBECTL is not None
    done = subprocess.run(  # the fixed path found above, fixed arguments
        [KUBECTL, "kustomize", str(copy / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d]
    for doc in rendered:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    namespace = "tenantry" if overlay == "production" else "tenantry-dev"
    assert all(
        d["metadata"].get("namespace") == namespace for d in rendered if d["kind"] != "Namespace"
    )
    secrets = {d["metadata"]["name"] for d in rendered if d["kind"] == "Secret"}
    deployments = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Deployment"}
    assert set(deployments) == {s for s in SERVICES if s != "access"}
    for name, deployment in deployments.items():
        spec = deployment["spec"]["template"]["spec"]
        (volume,) = [v for v in spec["volumes"] if "secret" in v]
        # kustomize appended its content hash and rewrote the reference to match.
        assert volume["secret"]["secretName"] in secrets
        assert volume["secret"]["secretName"].startswith(f"tenantry-svc-{name}-")
        image = spec["containers"][0]["image"]
        if overlay == "production":
            assert image.startswith("registry.example.com/tenantry"), image
        else:
            assert deployment["spec"]["replicas"] == 1
    (nats,) = [d for d in rendered if d["kind"] == "Service" and d["metadata"]["name"] == "nats"]
    assert nats["spec"].get("type", "ClusterIP") == (
        "LoadBalancer" if overlay == "production" else "ClusterIP"
    )
    hpas = [d for d in rendered if d["kind"] == "HorizontalPodAutoscaler"]
    assert len(hpas) == len(deployments) - 1  # all but audit
    for hpa in hpas:
        shape = GEN.SHAPES.get(hpa["metadata"]["name"], GEN.DEFAULT_SHAPE)
        wanted = 1 if overlay == "dev" else shape.min_replicas
        assert hpa["spec"]["minReplicas"] == wanted, hpa["metadata"]["name"]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with its built-in kustomize) not installed")
def test_monitoring_renders_the_same_dashboards_grafana_gets_in_compose(tmp_path: Path) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("state"))
    (copy / "monitoring" / "state").mkdir()
    (copy / "monitoring" / "state" / "clickhouse-password").write_text("x" * 32)
    assert KUBECTL is not None
    done = subprocess.run(
        [KUBECTL, "kustomize", str(copy / "monitoring")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rendered = {d["metadata"]["name"]: d for d in yaml.safe_load_all(done.stdout) if d}
    for doc in rendered.values():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert doc["metadata"]["namespace"] == "monitoring"
    grafana = K8S.parent / "grafana"
    dashboards = rendered["tenantry-grafana-dashboards"]
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert (
        dashboards["data"]["tenantry-ops.json"]
        == (grafana / "dashboards" / "tenantry-ops.json").read_text()
    )
    sources = yaml.safe_load(rendered["tenantry-grafana-datasources"]["data"]["tenantry.yaml"])
    (clickhouse,) = [s for s in sources["datasources"] if s["uid"] == "tenantry-clickhouse"]
    assert clickhouse["jsonData"]["host"] == "clickhouse.tenantry.svc"
    assert clickhouse["secureJsonData"]["password"].startswith("$__file{/run/secrets/grafana/")
    (secret,) = [d for d in rendered.values() if d["kind"] == "Secret"]
    assert secret["metadata"]["name"].startswith("tenantry-grafana-")  # content-hashed


def test_a_public_http_service_gets_its_port_opened(tmp_path: Path) -> None:
    """services/api (the HTTP door) is not in SERVICES yet; once it is, it is generated
    like this: clients reach a port of its own, apart from the health/metrics port."""
    docs = GEN.service_manifests("api")
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    by = {d["kind"]: d for d in docs}
    container = by["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": 8080,
        "public": 8000,
    }
    assert {p["port"] for p in by["Service"]["spec"]["ports"]} == {8080, 8000}
    assert {"ports": [{"protocol": "TCP", "port": 8000}]} in by["NetworkPolicy"]["spec"]["ingress"]
    if importlib.util.find_spec("services.api.settings") is None:
        return
    from services.api.settings import ApiSettings

    env = {**pod_env(container, tmp_path), "TENANTRY_NATS_PASSWORD": "x" * 32}
    env.pop("TENANTRY_NATS_PASSWORD_FILE")
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            mp.delenv(key)
        for key, value in env.items():
            mp.setenv(key, value)
        settings = ApiSettings()
    assert settings.api_port == 8000 and settings.http_port == 8080

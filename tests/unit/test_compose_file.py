"""docker-compose.yml: valid by the Compose specification, and each service's real
Settings (and bootstrap) accept exactly the environment and files compose gives it."""

from __future__ import annotations

import importlib
import inspect
import json
import os
from pathlib import Path

import jsonschema
import pytest
from pydantic import SecretStr

from shared.launcher import SERVICES
from shared.provision import provision
from shared.settings import Environment, TenantrySettings
from tests.support import compose

pytestmark = pytest.mark.unit

MODEL = compose.load()
PLATFORM = compose.platform_services(MODEL)


def test_valid_by_the_compose_specification_schema() -> None:
    schema = compose.compose_schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    errors = sorted(validator_cls(schema).iter_errors(MODEL), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_broken_file() -> None:
    # The validation above must be able to fail: a typo'd key and a bad condition.
    schema = compose.compose_schema()
    broken = compose.load()
    broken["services"]["gateway"]["healthchek"] = {}
    broken["services"]["audit"]["depends_on"]["clickhouse"]["condition"] = "when_ready"
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert len(list(validator.iter_errors(broken))) >= 2


def test_every_service_of_the_platform_is_in_compose() -> None:
    assert set(PLATFORM) == set(SERVICES), "compose and shared.launcher.SERVICES differ"
    for name, svc in PLATFORM.items():
        assert svc.command == ["python", "-m", f"services.{name}"]


def test_images_are_pinned_and_monitoring_ports_are_loopback_only() -> None:
    for name, spec in MODEL["services"].items():
        image = spec["image"]
        assert ":" in image and not image.endswith(":latest"), name
        for port in spec.get("ports", []):
            published = str(port)
            # The platform's two front doors: NATS clients, and the HTTP door (api).
            if published not in ("4222:4222", "8000:8000"):
                assert published.startswith("127.0.0.1:"), (name, published)
    assert MODEL["services"]["nats"]["image"].startswith("nats:2.15.")
    # qdrant-client 1.20 accepts a server within one minor version.
    qdrant = MODEL["services"]["qdrant"]["image"].split(":v")[1].split(".")
    assert qdrant[0] == "1" and abs(int(qdrant[1]) - 20) <= 1


def test_one_image_and_only_audit_carries_the_clickhouse_client() -> None:
    builds = {
        name: (spec["image"], spec["build"]["target"])
        for name, spec in MODEL["services"].items()
        if "build" in spec
    }
    assert {image for image, _ in builds.values()} == {"tenantry:0.1.0", "tenantry-audit:0.1.0"}
    assert {n for n, (_, target) in builds.items() if target == "audit"} == {"audit"}
    dockerfile = (compose.ROOT / "deploy" / "Dockerfile").read_text()
    assert 'pip install ".[platform,audit]"' in dockerfile
    assert 'pip install ".[platform]"' in dockerfile
    assert "chdb" not in dockerfile and "embedded" not in dockerfile


def test_nothing_secret_is_written_into_the_file() -> None:
    text = compose.COMPOSE_FILE.read_text()
    for service in PLATFORM.values():
        for key, value in service.environment.items():
            if key.endswith(("PASSWORD", "SECRET", "API_KEY")) and key != "ANTHROPIC_API_KEY":
                pytest.fail(f"{service.name}: {key} carries a secret in the environment")
        dsn = service.environment.get("TENANTRY_CLICKHOUSE_DSN", "")
        assert "@" not in dsn or ":" not in dsn.split("//")[1].split("@")[0], dsn
    assert "CLICKHOUSE_PASSWORD:" not in text


def test_startup_order_waits_for_what_each_service_needs() -> None:
    deps = {n: s.get("depends_on", {}) for n, s in MODEL["services"].items()}
    assert deps["nats"]["provision"]["condition"] == "service_completed_successfully"
    for name in PLATFORM:
        assert deps[name]["nats"]["condition"] == "service_healthy", name
        assert deps[name]["provision"]["condition"] == "service_completed_successfully"
        assert MODEL["services"][name]["healthcheck"]["test"][:4] == [
            "CMD",
            "python",
            "-m",
            "shared.probe",
        ]
    assert deps["retrieval"]["qdrant"]["condition"] == "service_healthy"
    assert deps["audit"]["clickhouse"]["condition"] == "service_healthy"
    for name in ("nats", "qdrant", "clickhouse"):
        assert "healthcheck" in MODEL["services"][name]
    # access signals nats-server: same PID namespace and same uid.
    assert MODEL["services"]["access"]["pid"] == "service:nats"
    assert MODEL["services"]["nats"]["user"].split(":")[0] == "65534"
    assert "--uid=65534" in MODEL["services"]["provision"]["command"]


def settings_class(name: str) -> type[TenantrySettings]:
    module = importlib.import_module(f"services.{name}.settings")
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, TenantrySettings)
        and obj is not TenantrySettings
        and obj.__module__ == module.__name__
    ]
    assert len(found) == 1, (name, found)
    return found[0]


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the `provision` service leaves in the volumes (run for real, minus chown)."""
    root = tmp_path_factory.mktemp("compose-state")
    provision(root / "state", SERVICES)
    return root / "state"


def container_env(service: compose.ComposeService, state: Path) -> dict[str, str]:
    """The service's compose environment, with mounted paths pointing into `state`."""
    volumes = {"platform-secrets": state / "secrets", "nats-auth": state / "nats"}
    env = {}
    for key, value in service.environment.items():
        host = service.host_path(value, volumes) if value.startswith("/") else None
        env[key] = str(host) if host is not None else value
    return env


@pytest.mark.parametrize("name", sorted(PLATFORM))
def test_settings_accept_exactly_the_compose_environment(
    name: str, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = PLATFORM[name]
    for key in list(os.environ):
        monkeypatch.delenv(key)
    env = container_env(service, state)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key, value in env.items():
        if key.endswith("_FILE"):
            assert Path(value).is_file(), f"{name}: {key} names a file compose does not mount"

    settings = settings_class(name)()
    assert settings.environment is Environment.PRODUCTION
    assert settings.nats_user == f"svc-{name}"
    passwords = json.loads((state / "secrets" / "platform.json").read_text())
    assert settings.nats_password is not None
    assert settings.nats_password.get_secret_value() == passwords[f"svc-{name}"]
    assert settings.http_port == 8080
    canary = (state / "secrets" / "canary-secret").read_text()
    if name in ("retrieval", "leakage"):
        secret = getattr(settings, "canary_secret")
        assert isinstance(secret, SecretStr) and secret.get_secret_value() == canary
    if name == "retrieval":
        assert str(getattr(settings, "qdrant_url")) == "http://qdrant:6333/"
    if name == "audit":
        dsn = getattr(settings, "dsn")()
        password = (state / "secrets" / "clickhouse-password").read_text()
        assert dsn == f"http://tenantry:{password}@clickhouse:8123/tenantry"
    if name == "access":
        assert getattr(settings, "nats_auth_dir") == state / "nats"
    # The service's own factory builds everything short of connecting (make_service in
    # the composed shape; bootstrap in a service not moved to it yet).
    app = importlib.import_module(f"services.{name}.app")
    build = app.make_service if hasattr(app, "make_service") else app.bootstrap
    service_obj = build(settings)
    assert service_obj.name == name


def test_a_missing_secret_file_stops_the_service_at_start(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = PLATFORM["leakage"]
    for key in list(os.environ):
        monkeypatch.delenv(key)
    for key, value in container_env(service, state).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TENANTRY_CANARY_SECRET_FILE", str(state / "absent"))
    with pytest.raises(Exception, match="TENANTRY_CANARY_SECRET_FILE") as info:
        settings_class("leakage")()
    assert (state / "secrets" / "canary-secret").read_text() not in str(info.value)
    # Without any password source, production refuses a named NATS user.
    monkeypatch.delenv("TENANTRY_CANARY_SECRET_FILE")
    monkeypatch.delenv("TENANTRY_NATS_PASSWORD_FILE")
    with pytest.raises(ValueError, match="no password"):
        settings_class("promptconfig")()


def test_prometheus_scrapes_every_service_on_its_health_port() -> None:
    import yaml

    config = yaml.safe_load((compose.ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "tenantry"]
    (dns,) = job["dns_sd_configs"]
    assert set(dns["names"]) == set(SERVICES)
    assert dns["port"] == int(PLATFORM["gateway"].environment["TENANTRY_HTTP_PORT"])


def test_bind_mounted_files_exist() -> None:
    for name, spec in MODEL["services"].items():
        for volume in spec.get("volumes", []):
            if isinstance(volume, str) and volume.startswith("./"):
                source = volume.split(":")[0]
                assert (compose.ROOT / source).exists(), (name, source)


def test_grafana_is_provisioned_with_both_datasources_the_dashboard_uses() -> None:
    import json

    import yaml

    grafana = compose.ROOT / "deploy" / "grafana"
    sources = yaml.safe_load(
        (grafana / "provisioning" / "datasources" / "tenantry.yaml").read_text()
    )
    uids = {s["uid"]: s for s in sources["datasources"]}
    clickhouse = uids["tenantry-clickhouse"]
    # The password comes from the file provision writes into grafana's secrets folder.
    secret_path = clickhouse["secureJsonData"]["password"]
    assert secret_path == "$__file{/run/secrets/grafana/clickhouse-password}"
    (mount,) = [
        v
        for v in MODEL["services"]["grafana"]["volumes"]
        if isinstance(v, dict) and v["target"] == "/run/secrets/grafana"
    ]
    assert mount["volume"]["subpath"] == "grafana"
    dashboard = json.loads((grafana / "dashboards" / "tenantry-ops.json").read_text())
    used = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert used == set(uids)


def test_the_build_context_sends_what_the_dockerfile_copies() -> None:
    import fnmatch

    ignore = (compose.ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [r.strip() for r in ignore if r.strip() and not r.startswith("#")]

    def sent(path: str) -> bool:
        keep = True
        for rule in rules:
            negate = rule.startswith("!")
            pattern = rule.lstrip("!")
            hit = fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern.rstrip("/*"))
            if hit:
                keep = negate
        return keep

    dockerfile = (compose.ROOT / "deploy" / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert sent(source) or sent(source + "/x.py"), source
    assert sent("services/gateway/app.py") and sent("deploy/clickhouse/001_database.sql")
    assert not sent(".venv/bin/python") and not sent("var/secrets/platform.json")
    assert not sent("shared/__pycache__/x.pyc")


@pytest.mark.skipif(os.geteuid() != 0, reason="the provision container runs as root (chown)")
def test_the_provision_command_compose_runs_works(tmp_path: Path) -> None:
    from shared.provision import main

    spec = MODEL["services"]["provision"]
    assert spec["user"] == "0:0" and spec["command"][:3] == ["python", "-m", "shared.provision"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in spec["volumes"]}
    assert mounts == {
        "/state/nats": "nats-auth",
        "/state/secrets": "platform-secrets",
        "/nats-data": "nats-data",
    }
    # The container's paths, as folders here (the two /state volumes sit inside /state).
    paths = {"/state": tmp_path / "state", "/nats-data": tmp_path / "nats-data"}
    args = []
    for arg in spec["command"][3:]:
        for target, folder in paths.items():
            arg = arg.replace(target, str(folder)) if target in arg else arg
        args.append(arg)
    assert main(args) == 0
    secrets = tmp_path / "state" / "secrets"
    for name in PLATFORM:
        assert (secrets / "services" / name / "nats-password").stat().st_uid == 65534, name
    assert (tmp_path / "nats-data").stat().st_uid == 65534
    assert (tmp_path / "state" / "nats" / "auth.conf").stat().st_uid == 65534
    assert (secrets / "grafana" / "admin-password").stat().st_uid == 472

"""docker-compose.yml as Compose itself reads it: YAML (anchors, merge keys), then
variable interpolation, then per-service environment and mounts.

There is no Docker engine where the tests run, so the tests take what compose would
hand each container (its command, environment and mounted files) and give it to a real
process with the hosts rewritten to local servers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}; $$ is a literal $.
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


class MissingVariable(ValueError):
    pass


def interpolate(value: Any, host_env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: interpolate(v, host_env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, host_env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2), match.group(3)
        current = host_env.get(name)
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if op is None:
            return current or ""
        if op.endswith("-"):
            return arg if unset else str(current)
        if unset:
            raise MissingVariable(f"{name}: {arg}")
        return str(current)

    return _VAR.sub(one, value)


def load(host_env: dict[str, str] | None = None, path: Path = COMPOSE_FILE) -> dict[str, Any]:
    raw = yaml.safe_load(path.read_text())
    return dict(interpolate(raw, host_env or {}))


def compose_schema() -> dict[str, Any]:
    """The Compose specification's JSON schema, as vendored by check-jsonschema (Apache-2.0,
    from github.com/compose-spec/compose-spec): nothing is downloaded."""
    files = resources.files("check_jsonschema.builtin_schemas.vendor")
    return dict(json.loads((files / "compose-spec.json").read_text()))


@dataclass
class Mount:
    source: str  # a named volume
    target: str  # path in the container
    subpath: str = ""
    read_only: bool = False


@dataclass
class ComposeService:
    name: str
    spec: dict[str, Any]
    mounts: list[Mount] = field(default_factory=list)

    @property
    def command(self) -> list[str]:
        return list(self.spec.get("command", []))

    @property
    def environment(self) -> dict[str, str]:
        env = self.spec.get("environment", {})
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        return {str(k): "" if v is None else str(v) for k, v in env.items()}

    def host_path(self, container_path: str, volumes: dict[str, Path]) -> Path | None:
        """Where a container path lives when each named volume is the folder given."""
        for mount in sorted(self.mounts, key=lambda m: -len(m.target)):
            if container_path == mount.target or container_path.startswith(mount.target + "/"):
                rest = container_path[len(mount.target) :].lstrip("/")
                base = volumes[mount.source] / mount.subpath
                return base / rest if rest else base
        return None


def services(model: dict[str, Any]) -> dict[str, ComposeService]:
    found = {}
    for name, spec in model["services"].items():
        mounts = []
        for volume in spec.get("volumes", []):
            if isinstance(volume, str):
                source, target, *mode = volume.split(":")
                mounts.append(Mount(source, target, read_only=mode == ["ro"]))
            else:
                mounts.append(
                    Mount(
                        volume["source"],
                        volume["target"],
                        (volume.get("volume") or {}).get("subpath", ""),
                        bool(volume.get("read_only")),
                    )
                )
        found[name] = ComposeService(name, spec, mounts)
    return found


def platform_services(model: dict[str, Any]) -> dict[str, ComposeService]:
    """The Tenantry services: those whose command is `python -m services.<name>`."""
    return {
        name: svc
        for name, svc in services(model).items()
        if svc.command[:2] == ["python", "-m"] and svc.command[2].startswith("services.")
    }

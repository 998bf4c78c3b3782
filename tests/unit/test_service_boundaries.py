"""Services import only shared/, never each other: a service is deployed, scaled and
reasoned about on its own, and what two services both need belongs in shared/."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"


def foreign_imports(source: str, service: str, package: str) -> list[str]:
    """Modules under services.<other> that `source` imports, at any depth (function-level
    imports included). `package` is the module's own package, for relative imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names = [".".join([*base, node.module] if node.module else base)]
            else:
                names = [node.module or ""]
            # `from services import leakage` names the service in the imported names.
            if names == ["services"]:
                names = [f"services.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "services" and len(parts) > 1 and parts[1] != service:
                found.append(name)
    return found


def test_the_scan_finds_every_kind_of_cross_service_import() -> None:
    source = (
        "import services.leakage.canary\n"
        "from services.leakage import canary\n"
        "from services import leakage\n"
        "from ..leakage.fingerprint import pack\n"
        "def later():\n"
        "    from services.llm.tokens import count\n"
        "from services.retrieval.index import search\n"
        "from shared.canary import Canaries\n"
    )
    found = foreign_imports(source, "retrieval", "services.retrieval")
    assert found == [
        "services.leakage.canary",
        "services.leakage",
        "services.leakage",
        "services.leakage.fingerprint",
        "services.llm.tokens",
    ]


def test_no_service_imports_another() -> None:
    offenders = []
    for path in sorted(SERVICES.glob("*/**/*.py")):
        service = path.relative_to(SERVICES).parts[0]
        package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
        for name in foreign_imports(path.read_text(encoding="utf-8"), service, package):
            offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)

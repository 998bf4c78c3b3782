"""`tenantry`: the ops CLI. Everything goes over the bus; it never opens a store.

Each command group lives in its own module; this one only assembles them.
"""

from __future__ import annotations

import typer

from shared.cli import config, data, platform, usage
from shared.cli.audit import audit
from shared.cli.tenants import tenants

# `config` registers its commands on the tenants group when imported.
_ = config
app = typer.Typer(help="Tenantry: multi-tenant AI platform operations.", no_args_is_help=True)
app.add_typer(tenants, name="tenants")
app.add_typer(audit, name="audit")
app.command()(platform.run)
app.command()(platform.demo)
app.command()(data.ingest)
app.command()(data.ask)
app.command()(usage.usage)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

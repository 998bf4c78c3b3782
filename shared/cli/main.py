"""`tenantry`: the ops CLI. Everything goes over the bus; it never opens a store.

Each command group lives in its own module; this one holds the global options and
assembles the groups.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from shared.cli import common, config, data, platform, usage
from shared.cli.audit import audit
from shared.cli.finetune import finetune
from shared.cli.keys import keys
from shared.cli.tenants import tenants
from shared.client_transport import DEFAULT_NATS_URL

# `config` registers its commands on the tenants group when imported.
_ = config
app = typer.Typer(
    help="Tenantry: multi-tenant AI platform operations.",
    no_args_is_help=True,
    add_completion=False,
    # Failures are one line on stderr (common.fail); `--debug` shows tracebacks.
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(tenants, name="tenants")
app.add_typer(audit, name="audit")
app.add_typer(usage.usage, name="usage")
app.add_typer(finetune, name="finetune")
app.add_typer(keys, name="keys")
app.command()(platform.run)
app.command()(platform.demo)
app.command()(data.ingest)
app.command()(data.ask)


def _version(value: bool) -> None:
    if value:
        from importlib import metadata  # ~0.1 s to import: only when asked

        try:
            found = metadata.version("tenantry")
        except metadata.PackageNotFoundError:
            found = "unknown (not installed)"
        typer.echo(f"tenantry {found}")
        raise typer.Exit()


@app.callback()
def global_options(
    nats_url: Annotated[
        str,
        typer.Option(
            "--nats-url",
            envvar="TENANTRY_NATS_URL",
            help="NATS server URL(s), comma-separated.",
        ),
    ] = DEFAULT_NATS_URL,
    creds: Annotated[
        Path | None,
        typer.Option(
            "--creds",
            envvar="TENANTRY_NATS_CREDS",
            dir_okay=False,
            help="Credentials file: Tenantry JSON (user, password) or a NATS .creds file.",
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            envvar="TENANTRY_NATS_USER",
            help="NATS user; the password is read from TENANTRY_NATS_PASSWORD.",
        ),
    ] = None,
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir",
            envvar="TENANTRY_DATA_DIR",
            help="Embedded platform's data directory (its ops credentials are read from here).",
        ),
    ] = Path("var"),
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=0.1,
            help="Seconds to wait for a service's answer [default: 30; ask 120; verify 300].",
            show_default=False,
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and NATS client logs on stderr.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Tenantry: multi-tenant AI platform operations.

    Ops credentials: --creds, else --user with TENANTRY_NATS_PASSWORD, else the embedded
    platform's secrets under --data-dir.
    """
    common.settings = common.Globals(
        nats_url=nats_url,
        creds=creds,
        user=user,
        data_dir=data_dir,
        timeout_s=timeout,
        debug=debug,
    )
    if debug:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    else:
        # nats-py and asyncio report connection trouble through logging; the command
        # itself reports it as one line, so nothing else may reach the terminal.
        for name in ("nats", "asyncio", "tenantry.client"):
            logging.getLogger(name).disabled = True


def main() -> None:
    try:
        # standalone_mode=False: usage errors come back here, to be one line like every
        # other failure (Typer would draw a box around them).
        code = app(standalone_mode=False)
    except typer.Abort:
        common.err_console.print("aborted")
        sys.exit(1)
    except typer.TyperException as exc:  # usage errors: bad or missing options
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            # `tenantry` or `tenantry tenants` alone: the help is the answer.
            help_text = ctx.get_help()  # Typer's rich help prints itself, returning ""
            if help_text:
                typer.echo(help_text)
            sys.exit(0)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        common.err_console.print(f"error: {message}", markup=False)
        if ctx is not None:
            common.err_console.print(f"see `{ctx.command_path} --help`", markup=False)
        sys.exit(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        common.err_console.print("interrupted")
        sys.exit(130)
    except ValidationError as exc:  # a message built from bad input outside common.run
        if common.settings.debug:
            raise
        common.err_console.print(f"error: {common.describe_invalid(exc)}", markup=False)
        sys.exit(1)
    except Exception as exc:  # the last line of defence: one line, not a traceback
        if common.settings.debug:
            raise
        text = " ".join(str(exc).split())[:200]
        common.err_console.print(
            f"error: unexpected {type(exc).__name__}: {text} (run with --debug for details)",
            markup=False,
        )
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()

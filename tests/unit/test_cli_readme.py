"""README's CLI section matches the CLI exactly: the same commands, the same options,
and every `tenantry …` example in the README names options that exist."""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main

from shared.cli.main import app

pytestmark = pytest.mark.unit

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
ROOT = typer.main.get_command(app)
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z-]*|-[a-z])(?![\w-])")


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def commands(command: Any = ROOT, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every runnable command path of the app (Typer vendors click: duck-typed)."""
    found: dict[tuple[str, ...], Any] = {}
    subcommands = getattr(command, "commands", None)
    if subcommands is None or (path and command.invoke_without_command):
        found[path] = command
    for name, sub in (subcommands or {}).items():
        if not sub.hidden:
            found |= commands(sub, (*path, name))
    return found


def option_names(command: Any) -> set[str]:
    """Each visible option as README writes it: `--tenant/-t`, `--json`."""
    return {
        "/".join([*p.opts, *p.secondary_opts])
        for p in command.params
        if p.param_type_name == "option" and not p.hidden and p.name != "help"
    }


def all_option_spellings(command: Any) -> set[str]:
    names = {"--help", "-h"}
    for p in command.params:
        if p.param_type_name == "option":
            names |= {*p.opts, *p.secondary_opts}
    return names


def readme_table() -> dict[tuple[str, ...], set[str]]:
    rows = {}
    for line in section("CLI").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows[tuple(cells[0].strip("`").split())] = set(re.findall(r"`([^`]+)`", cells[1]))
    return rows


def test_the_table_lists_every_command_with_exactly_its_options() -> None:
    table = readme_table()
    cli = {path: option_names(cmd) for path, cmd in commands().items() if path}
    missing = sorted(" ".join(p) for p in cli.keys() - table.keys())
    extra = sorted(" ".join(p) for p in table.keys() - cli.keys())
    assert not missing, f"commands the README's CLI table lacks: {missing}"
    assert not extra, f"commands the README's CLI table shows but the CLI has not: {extra}"
    for path, options in cli.items():
        assert table[path] == options, (
            f"`tenantry {' '.join(path)}`: README shows {sorted(table[path])}, "
            f"the CLI has {sorted(options)}"
        )


def test_the_synopsis_shows_exactly_the_global_options() -> None:
    synopsis = section("CLI").split("```sh", 1)[1].split("```", 1)[0]
    shown = set(OPTION.findall(synopsis))
    assert shown == {n.split("/")[0] for n in option_names(ROOT)}


def invocations() -> list[list[str]]:
    """Every `tenantry …` the README shows: `$T …` lines of shell blocks (T is the CLI)
    and inline code spans starting with `tenantry `."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line.startswith("$T "):
                found.append(shlex.split(line)[1:])
    for span in re.findall(r"`tenantry ([^`]+)`", README):
        found.append(span.replace("\n", " ").split())
    # `finetune create|list|show` names several commands: check each one.
    return [
        list(words) for example in found for words in itertools.product(*_alternatives(example))
    ]


def _alternatives(words: list[str]) -> list[list[str]]:
    return [w.split("|") if "|" in w and not w.startswith("-") else [w] for w in words]


def problems_in(words: list[str]) -> list[str]:
    """What is wrong with one example invocation (words after `tenantry`)."""
    known, groups = commands(), _groups()
    problems = []
    path: tuple[str, ...] = ()
    rest = list(words)
    # Global options first (with their values), then the longest command path.
    while rest and rest[0].startswith("-"):
        word = rest.pop(0)
        if word not in all_option_spellings(ROOT):
            problems.append(f"no global option {word}")
        elif rest and not rest[0].startswith("-") and word not in {"--debug", "--version"}:
            rest.pop(0)
    while rest and ((*path, rest[0]) in known or (*path, rest[0]) in groups):
        path = (*path, rest.pop(0))
    if path not in known:
        return [*problems, f"no command {' '.join(path + tuple(rest[:1]))!r}"]
    spellings = all_option_spellings(known[path])
    for word in OPTION.findall(" ".join(rest)):
        if word not in spellings:
            problems.append(f"`{' '.join(path)}` has no option {word}")
    return problems


def _groups() -> set[tuple[str, ...]]:
    return {path[:i] for path in commands() for i in range(1, len(path))}


def test_the_checker_catches_wrong_examples() -> None:
    assert problems_in(["audit", "export", "--tenant", "x", "--since", "2025-01-01"]) == []
    assert problems_in(["--nats-url", "nats://h:1", "usage", "totals", "-t", "x"]) == []
    assert problems_in(["audit", "export", "--tenant", "x", "--begin", "1"]) != []
    assert problems_in(["tenants", "purge", "-t", "x"]) != []
    assert problems_in(["--colour", "tenants", "list"]) != []
    assert [list(w) for w in itertools.product(*_alternatives(["a", "b|c", "--x"]))] == [
        ["a", "b", "--x"],
        ["a", "c", "--x"],
    ]


def test_every_example_uses_real_commands_and_options() -> None:
    examples = invocations()
    assert len(examples) > 15  # the parser found the examples
    problems = [f"tenantry {' '.join(w)}: {p}" for w in examples for p in problems_in(w)]
    assert not problems, "\n".join(problems)

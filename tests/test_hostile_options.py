"""Every option and argument of every command, walked with hostile values, generated from the Typer app
itself: a new option is covered the day it is added, a new command fails here until it has a baseline.

Negative, huge, non-finite and empty values, and a path that is a user's file, a stranger's folder or a
link to one, must each end in one `error:` line and exit code 2, with no traceback; an output path must
be left as it was. Zero is often valid (a seed, a temperature): it must not give a traceback either.
"""

from __future__ import annotations

import inspect
import os
import types
from pathlib import Path
from typing import Annotated, Union, get_args, get_origin

import pytest
import typer
from typer.testing import CliRunner

from cli import app
from tests.conftest import write_persona

runner = CliRunner()
ROOT_COMMAND = typer.main.get_command(app)
NUMBERS = {int: ["-1", str(2**70), "nan"], float: ["-1", "1e308", "nan", "inf", "-inf"]}
PATHS = ["", "a-file", "a-folder", "a-link"]
STOPPED = "stopped after the checks (test)"  # a user's file, a stranger's folder, a link to that folder


def commands(group=ROOT_COMMAND, path=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def baselines(run: Path, tmp: Path) -> dict[tuple[str, ...], dict]:
    """Arguments with which each command would do its (small) job, or stop at its first check."""
    return {
        ("generate-data",): dict(persona="mini", n="8", num_proc="1", out=tmp / "data-out"),
        ("train",): dict(persona="mini", data=tmp / "no-data", out=tmp / "run-out", max_steps="1"),
        ("chat",): dict(persona="mini", run=run, prompt="hi", max_new_tokens="4"),
        ("inspect",): dict(persona="mini", run=run, prompt="hi", out=tmp / "inspect-out"),
        ("eval",): dict(persona="mini", run=run),
        ("compare",): dict(personas=["mini", "guppy"], out=tmp / "compare-out"),
        ("runs",): dict(runs=[run], out=tmp / "runs.png"),
        ("run",): dict(persona="mini", n="8", max_steps="1"),
        ("export",): dict(persona="mini", run=run, out=tmp / "export-out"),
        ("serve",): dict(persona="mini", run=run, folder=tmp / "page"),  # a page to serve: --port is reached
        ("persona", "new"): dict(name="newfish", from_="mini"),
        ("persona", "schema"): dict(out=tmp / "schema.json"),
        ("persona", "sample"): dict(persona="mini", n="2"),
        ("persona", "list"): dict(),
        ("persona", "show"): dict(persona="mini"),
        ("persona", "validate"): dict(persona="mini"),
    }


def argv(path: tuple[str, ...], cmd, values: dict, flags: list[str] = ()) -> list[str]:
    out = [*path]
    for p in cmd.params:
        if p.name not in values:
            continue
        value = values[p.name]
        items = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        out += items if p.param_type_name == "argument" else [x for v in items for x in (p.opts[0], v)]
    return out + list(flags)


def declared_type(cmd, p):
    """The Python type the command declares for parameter `p` (a list's item type), read from the signature
    typer itself reads: typer's own attributes for it changed with its versions (type_descriptor is 0.29's)."""
    kind = inspect.signature(inspect.unwrap(cmd.callback), eval_str=True).parameters[p.name].annotation
    while get_origin(kind) in (Annotated, Union, types.UnionType, list):
        kind = next(a for a in get_args(kind) if a is not type(None))
    return kind


def hostile(cmd, p) -> list[str]:
    """The values to try on parameter `p`, by its Python type."""
    kind = declared_type(cmd, p)
    if getattr(p, "is_flag", False) or kind is bool:
        return []
    if kind in NUMBERS:
        return NUMBERS[kind]
    return PATHS if kind is Path else [""]


CASES = [pytest.param(path, p.name, value, id=f"{' '.join(path)} {p.name}={value or 'empty'}")
         for path, cmd in commands() for p in cmd.params for value in hostile(cmd, p)]
ZEROS = [pytest.param(path, p.name, id=f"{' '.join(path)} {p.name}=0") for path, cmd in commands() for p in cmd.params
         if not getattr(p, "is_flag", False) and declared_type(cmd, p) in (int, float)]


@pytest.fixture
def place(tmp_path, monkeypatch, mini_run):
    """A working folder with the mini persona, a user's file, a stranger's folder and a link to it."""
    write_persona(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("a user's notes\n")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-folder" / "index.html").write_text("a user's page\n")
    os.symlink(tmp_path / "a-folder", tmp_path / "a-link")
    (tmp_path / "page").mkdir()
    for name in ("index.html", "guppy.json"):  # what `guppy serve` looks for in an exported page
        (tmp_path / "page" / name).write_text("{}\n")
    import cli

    checks = cli.check_run_all

    def stop(*args, **kwargs):  # `guppy run` after its checks: the rest is the other commands' business
        checks(*args, **kwargs)
        raise cli.GuppyError(STOPPED)

    monkeypatch.setattr(cli, "check_run_all", stop)
    import guppy.export.serve as serve

    bind = serve.make_server

    def bound(*args, **kwargs):  # `guppy serve` once its port is bound: never serve in a test
        bind(*args, **kwargs).server_close()
        raise cli.GuppyError(STOPPED)

    monkeypatch.setattr(serve, "make_server", bound)
    return tmp_path, baselines(mini_run, tmp_path)


def snapshot(tmp: Path) -> dict:
    return {str(p.relative_to(tmp)): p.read_text() for p in [tmp / "a-file", tmp / "a-folder" / "index.html"]} | \
        {"folder": sorted(os.listdir(tmp / "a-folder")), "link": os.readlink(tmp / "a-link")}


def test_every_command_has_a_baseline(tmp_path):
    assert {path for path, _ in commands()} == set(baselines(tmp_path, tmp_path))


@pytest.mark.parametrize("path,name,value", CASES)
def test_a_hostile_value_is_one_line(place, path, name, value):
    tmp, base = place
    cmd = dict(commands())[path]
    before = snapshot(tmp)
    values = dict(base[path])
    if name == "run":
        values.pop("folder", None)  # serve: an explicit page would make --run moot
    given = [value, *values[name][1:]] if isinstance(values.get(name), list) else value
    for flags in [[]] + [[f"--{f}"] for f in ("overwrite", "onnx", "web", "dataset")
                         if name == "out" and any(p.name == f for p in cmd.params)]:
        result = runner.invoke(app, argv(path, cmd, {**values, name: given}, flags))
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and "Traceback" not in result.output, (flags, result.output, result.exception)
        assert len(lines) == 1 and lines[0].startswith("error: ") and STOPPED not in lines[0], (flags, result.output)
        assert snapshot(tmp) == before, f"{' '.join(path)} --{name} {value} {flags} changed what it was pointed at"


@pytest.mark.parametrize("path,name", ZEROS)
def test_zero_is_a_value_or_one_line(place, path, name):
    tmp, base = place
    cmd = dict(commands())[path]
    values = {**base[path], name: "0"}
    if "run" in values:
        (tmp / "no-run").mkdir(exist_ok=True)
        values["run"] = tmp / "no-run"  # where zero is valid, stop at the missing model rather than work
        values.pop("folder", None)  # (serve --port 0 would serve a page until stopped)
    result = runner.invoke(app, argv(path, cmd, values))
    assert "Traceback" not in result.output and not isinstance(result.exception, Exception) or \
        isinstance(result.exception, SystemExit), (result.output, result.exception)
    if result.exit_code:
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output

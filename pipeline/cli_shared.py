"""What the `guppy` command's modules share: the consoles, the group that turns a GuppyError into
one line per problem and exit code 2, the options several commands take (declared once), and
how a warning is printed.

It lives in pipeline/ because the top level is fixed (DESIGN.md) and the persona commands
(pipeline/persona_cli.py), which are data-side, need it as much as cli.py does; guppy/ may not
hold it, as guppy/ never imports pipeline/.
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.table import Table

from guppy.config import DEVICE_HELP, Device
from guppy.errors import GuppyError

console = Console()
err_console = Console(stderr=True)


class GuppyGroup(typer.core.TyperGroup):
    """Turns a GuppyError raised anywhere below into a clean exit 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GuppyError as e:
            for problem in e.problems:
                err_console.print(f"[bold red]error:[/] {problem}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except typer.BadParameter as e:  # a bad option value (a choice, a number): one line too, not a box
            err_console.print(f"error: {e.format_message().replace('Value error, ', '')}", highlight=False,
                              soft_wrap=True, markup=False)
            raise typer.Exit(2) from None


def new_app(help: str) -> typer.Typer:
    return typer.Typer(cls=GuppyGroup, help=help, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_enable=False, rich_markup_mode="rich")


# Options shared by several commands, declared once.
PersonaArg = Annotated[str, typer.Argument(help="Persona name (personas/NAME.yaml here, else a shipped one) or a path to a YAML file.")]
SeedOpt = Annotated[int, typer.Option(help="Random seed; the same seed gives the same result.")]
RunOpt = Annotated[Optional[Path], typer.Option("--run", help="Run folder. Default: runs/PERSONA.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace the output folder if it exists.")]
DeviceOpt = Annotated[Device, typer.Option(help=f"Where the model runs: {DEVICE_HELP}")]


def print_warnings(warnings: list[str]) -> None:
    for line in warnings:
        err_console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)


def train_options(command):
    """Give `command` one option per TrainConfig field (guppy/config.py), named for the field and with
    its description as the help, so a new field is one edit there. The command receives them as
    **config, None where the user gave none (the preset's value, or the field's default, then holds).
    The help says each default as the presets make it (guppy/config.py: preset_defaults)."""
    import inspect
    import types
    from typing import Literal, Union, get_args, get_origin

    from guppy.config import TrainConfig, preset_defaults
    from guppy.presets import PRESETS, preset_help

    options = []
    fields = TrainConfig.model_fields
    for name in ["preset", *(f for f in fields if f != "preset")]:
        field, kind = fields[name], fields[name].annotation
        if get_origin(kind) in (Union, types.UnionType):  # float | None
            kind = next(a for a in get_args(kind) if a is not type(None))
        if name == "preset":
            kind, help = Literal[tuple(PRESETS)], f"{field.description} {preset_help()}. (default: {field.default})"
        else:  # round brackets: rich would read [...] as markup
            help = f"{field.description} (default: {preset_defaults(name)})"
        options.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                         annotation=Annotated[Optional[kind], typer.Option(help=help)]))
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD]
    command.__signature__ = inspect.Signature(own + options)
    return command


def given(config: dict) -> dict:
    return {k: v for k, v in config.items() if v is not None}


def print_generate_report(report) -> None:
    print_warnings(report.warnings)
    table = Table("", "", title=f"{report.persona} -> {report.out}", show_header=False)
    for label, value in [
        ("conversations", f"{report.rows:,} ({report.train:,} train, {report.test:,} test)"),
        ("unique user prompts", f"{report.unique_prompts:,}"),
        ("unique replies", f"{report.unique_replies:,}"),
        ("rendered / duplicates dropped", f"{report.rendered:,} / {report.duplicates_dropped:,}"),
        ("replies in style", f"{report.style_share:.1%}"
         + (f" ({report.style_dropped:,} conversations out of style dropped)" if report.style_dropped else "")),
        ("time", f"{report.seconds:.2f} s"),
    ]:
        table.add_row(label, value)
    console.print(table)
    assoc = Table("association", "share of its topics' replies that show it", title="associations in the data")
    for name, share in report.association_share.items():
        assoc.add_row(name, f"{share:.1%}")
    console.print(assoc)
    topics = Table("topic", "rows", "topic", "rows", "topic", "rows", title="per topic")
    items = list(report.per_topic.items())
    for i in range(0, len(items), 3):
        cells = [c for t, k in items[i:i + 3] for c in (t, f"{k:,}")]
        topics.add_row(*cells, *[""] * (6 - len(cells)))
    console.print(topics)
    for topic, lacking in report.short_topics.items():
        err_console.print(f"[yellow]warning:[/] topic '{topic}' made {lacking} fewer unique conversations than "
                          "asked: its template cannot reach the requested size (add variety or lower its weight)")


def export_gguf(*, persona: str, run: Path | None, out: Path | None, kind: str, overwrite: bool) -> None:
    """`export --gguf`: write, check with llama.cpp, print what it checked."""
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise GuppyError("--gguf needs the gguf package: pip install 'guppy-persona[gguf]'") from None
    from guppy.export.gguf import export_gguf as run_export

    with console.status(f"writing GGUF ({kind}), checking it with llama.cpp"):
        meta = run_export(persona=persona, run=run, out=out, kind=kind, overwrite=overwrite, say=console.print)
    table = Table("file", "type", "size", "tokens as ours", "greedy same", "top-1 same", "max logit diff",
                  title=meta["out"])
    c = meta["llama_cpp"] or {}
    table.add_row(meta["file"], meta["type"], f"{meta['bytes'] / 1e6:.2f} MB",
                  *([f"{c['tokens_same']} of {c['chats']}", f"{c['greedy_same']} of {c['prompts']}"
                     + (f" (+{c['near_ties']} at a near tie)" if c.get("near_ties") else ""),
                     f"{c['top1']:.1%} of {c['steps']}", f"{c['max_logit_diff']:.1e}"] if c else ["not checked"] * 4))
    console.print(table)
    if meta["residual_scale"] != 1:
        console.print(f"ReLU written as GELU on a residual stream x{meta['residual_scale']:.0f}: in torch, largest "
                      f"logit difference {meta['rewrite']['max_logit_diff']:.1e} on {meta['checked_on']}; "
                      f"largest f16 value {meta['largest_f16_value']:.0f} of 65504")
    if meta["not_verified"]:
        console.print(f"[bold]not verified with llama.cpp[/]: {meta['not_verified']}")
    console.print(f"Ollama: ollama create {meta['persona']} -f {Path(meta['out']) / 'Modelfile'}")


def used_cuda() -> bool:
    """Did this process start CUDA (train, eval, run, chat on a GPU)? Asked without importing torch."""
    torch = sys.modules.get("torch")
    return torch is not None and torch.cuda.is_initialized()


def may_exit_now() -> bool:
    """exit_now pays after CUDA; not under a profiler (`python -m cProfile`), which writes its file after the
    script returns. (Asking whether cProfile was imported is not enough: torch._dynamo imports it anyway.)"""
    return used_cuda() and not profiled()


def profiled() -> bool:
    """Is a profiler running? Python 3.12's cProfile watches through sys.monitoring, not sys.setprofile."""
    monitoring = getattr(sys, "monitoring", None)  # Python >= 3.12
    return sys.getprofile() is not None or (monitoring is not None and
                                            monitoring.get_tool(monitoring.PROFILER_ID) is not None)


def exit_now(code) -> NoReturn:
    """Leave as sys.exit(code) would, but without the interpreter's teardown, which after a CUDA context took
    1.1-1.4 s on the H200 machines, against 0.2 s this way (tests/bench/bench_exit.sh). atexit handlers still
    run (multiprocessing's and concurrent.futures' clean-ups among them), and every file guppy writes is
    complete and closed before its command returns."""
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"): printed, exit code 1
        print(code, file=sys.stderr)
        code = 1
    _flush()
    atexit._run_exitfuncs()
    _flush()
    os._exit(code)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away (`guppy eval | head`), or a closed stream
            pass

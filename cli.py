"""The `guppy` command: one thin function per command, each calling into pipeline/ or guppy/.

Heavy libraries (torch, datasets) are imported inside the commands, so `guppy --help`
and `guppy persona list` start fast. A user's mistake (GuppyError) prints one line per
problem and exits with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from guppy.config import CHAT, EVAL_SAMPLES, GENERATE
from guppy.errors import GuppyError
from pipeline.cli_shared import (DeviceOpt, OverwriteOpt, PersonaArg, RunOpt, SeedOpt, console, err_console, exit_now,
                                 given, may_exit_now, new_app, print_generate_report, train_options)
from pipeline.persona_cli import persona_app


app = new_app("Guppy: turn a persona spec into a small language model with that personality, and measure how well it took.")
app.add_typer(persona_app, name="persona")


def _quiet_datasets() -> None:
    """Our own progress bar says what is happening. Said through the environment while `datasets` is not yet
    imported, so that a command that ends up not reading a dataset (a cached one, guppy/train/prepared.py)
    does not import it (~1 s)."""
    if "datasets" not in sys.modules:
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("DATASETS_VERBOSITY", "error")
        return
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


# ---------------------------------------------------------------------------------- data

@app.command("generate-data")
def generate_data(
    persona: PersonaArg,
    n: Annotated[int, typer.Option("--n", help="How many conversations to generate.")] = GENERATE.n,
    seed: SeedOpt = 0,
    out: Annotated[Optional[Path], typer.Option(help="Output folder. Default: runs/PERSONA/data.")] = None,
    test_size: Annotated[float, typer.Option(help="Share of conversations held out for the test split.")] = GENERATE.test_size,
    num_proc: Annotated[int, typer.Option(help="Processes rendering (and checking) conversations in parallel; default: the cores here, up to 8; 1 uses no extra processes. The data is the same either way.")] = GENERATE.num_proc,
    format: Annotated[str, typer.Option("--format", help="arrow (save_to_disk), jsonl or parquet.")] = GENERATE.format,
    overwrite: OverwriteOpt = False,
    drop_violations: Annotated[bool, typer.Option("--drop-violations", help="Leave out conversations whose replies break the persona's style, instead of failing; the card counts them.")] = False,
):
    """Render the persona's templates into a Hugging Face DatasetDict(train, test) with a dataset card.

    A reply that breaks the persona's style (banned words, case, sentence or reply length) fails the
    run with the template lines behind the worst offenders, unless --drop-violations."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from pipeline.generate import generate_data as run

    _quiet_datasets()
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as progress:
        task = progress.add_task("rendering", total=n)
        report = run(persona=persona, n=n, seed=seed, out=out, test_size=test_size, num_proc=num_proc,
                     fmt=format, overwrite=overwrite, drop_violations=drop_violations,
                     on_total=lambda k: progress.update(task, total=k),
                     on_progress=lambda k: progress.advance(task, k))
    print_generate_report(report)


# ---------------------------------------------------------------------------------- model

@app.command()
@train_options
def train(
    persona: PersonaArg,
    data: Annotated[Optional[Path], typer.Option(help="Dataset: a generate-data folder, or a JSONL/Parquet file with `messages` or `input`/`output` columns. Default: the run folder's data/, else runs/PERSONA/data.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder. Default: runs/PERSONA.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")] = False,
    **config,
):
    """Train the tokenizer and the model on a persona's dataset (works under torchrun for several GPUs).

    Every training and model-shape setting is an option; those not given come from the preset
    (tiny: a 2-core laptop CPU in about 3 minutes; small: about 10; guppy: the reference's 8.7M shape, for a GPU).
    """
    from guppy.train.trainer import train as run

    _quiet_datasets()
    summary = run(persona=persona, data=data, out=out, resume=resume, **given(config))
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary rather than one per process
        console.print(summary_table("trained", summary))


def summary_table(title: str, summary: dict) -> Table:
    table = Table("", "", title=title, show_header=False)
    for key, value in summary.items():
        table.add_row(str(key), f"{value:,.4g}" if isinstance(value, float) else str(value))
    return table


@app.command()
def chat(
    persona: PersonaArg,
    run: RunOpt = None,
    prompt: Annotated[Optional[str], typer.Option(help="Answer this one message and exit, instead of chatting.")] = None,
    temperature: Annotated[float, typer.Option(help="Randomness of replies; 0 always picks the likeliest token.")] = CHAT.temperature,
    top_k: Annotated[Optional[int], typer.Option(help="Sample only from the k likeliest tokens.")] = CHAT.top_k,
    top_p: Annotated[float, typer.Option(help="Sample only from the likeliest tokens that make up this probability.")] = CHAT.top_p,
    seed: Annotated[Optional[int], typer.Option(help="Random seed; the same seed gives the same reply.")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Longest reply, in tokens.")] = CHAT.max_new_tokens,
):
    """Talk to a trained persona (type quit, or press Ctrl-D, to leave)."""
    from guppy.model.chat import chat as run_chat

    run_chat(persona=persona, run=run, prompt=prompt, temperature=temperature, top_k=top_k, top_p=top_p,
             seed=seed, max_new_tokens=max_new_tokens)


@app.command()
def inspect(
    persona: PersonaArg,
    prompt: Annotated[str, typer.Option(help="The message to answer and inspect.")],
    run: RunOpt = None,
    seed: SeedOpt = 0,
    temperature: Annotated[float, typer.Option(help=f"Randomness of the reply (top-p {CHAT.top_p}, as guppy chat); 0 always picks the likeliest token.")] = 0.0,
    layer: Annotated[int, typer.Option(help="Layer whose four attention steps to draw (from 0).")] = 0,
    head: Annotated[int, typer.Option(help="Head of that layer (from 0).")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="Report folder. Default: runs/PERSONA/inspect.")] = None,
):
    """Show how a reply is made: top-5 next-token probabilities, every head's attention, one head's four steps."""
    from rich.markup import escape

    from guppy.eval.inspect import inspect as run_inspect

    report = run_inspect(persona=persona, run=run, prompt=prompt, temperature=temperature, seed=seed,
                         layer=layer, head=head, out=out)
    console.print(f"[dim]you:[/] {escape(report['prompt'])}\n[bold]{report['persona']}:[/] {escape(report['reply'])}")
    table = Table("#", "wrote", "p", *[f"top {i + 1}" for i in range(5)], title="what it could have said")
    for i, step in enumerate(report["top5"]):
        table.add_row(str(i + 1), escape(step["token"]), f"{step['p']:.3f}",
                      *[f"{escape(tok)} {p:.2f}" for tok, p in step["top"]])
    console.print(table)
    word = report["persona_word"]
    if word is not None:
        heads = Table("layer.head", "on the prompt", "the user's words it looks at most",
                      title=f"while writing '{escape(word['word'])}'")
        for h in word["heads"]:
            heads.add_row(f"{h['layer']}.{h['head']}", f"{h['prompt_share']:.0%}",
                          ", ".join(f"{escape(tok)} {p:.2f}" for tok, p in h["top"]))
        console.print(heads)
    console.print(f"report: {report['out']}/inspect.md ({', '.join(report['charts'])})")


# ---------------------------------------------------------------------------------- evaluation

SamplesOpt = Annotated[int, typer.Option(help="Sampled replies per prompt (eval and compare use the same, so a model gets one score).")]
SeedsOpt = Annotated[Optional[str], typer.Option(help="Several sampling seeds, e.g. 0,1,2: the report gives each headline figure's median and range over them (replaces --seed).", show_default=False)]
EvalDataOpt = Annotated[Optional[Path], typer.Option("--data", help="Measure against this dataset (a folder from `guppy generate-data`, or a .jsonl/.parquet file) instead of the persona's own.", show_default=False)]


@app.command("eval")
def eval_(persona: PersonaArg, run: RunOpt = None, samples: SamplesOpt = EVAL_SAMPLES, seed: SeedOpt = 0,
          seeds: SeedsOpt = None, data: EvalDataOpt = None, device: DeviceOpt = "auto"):
    """Measure how strongly the persona shows in a trained model: persona words, on topic, novelty, over a chat,
    each with floor, ceiling and a 95% interval. Writes runs/PERSONA/eval/report.{json,md}."""
    import time

    from guppy.eval.commands import evaluate, parse_seeds

    _quiet_datasets()
    started = time.perf_counter()
    chosen = parse_seeds(seeds) if seeds is not None else [seed]
    with console.status(f"evaluating (seed{'s' if len(chosen) > 1 else ''} {', '.join(map(str, chosen))}): "
                        "sampling replies, scoring the model, the floor and the ceiling"):
        report = evaluate(persona=persona, run=run, samples=samples, seeds=chosen, data=data, device=device)
    print_eval_report(report, time.perf_counter() - started)
    return report


def print_eval_report(report: dict, seconds: float) -> None:
    from guppy.eval.report import hit_rate_table

    console.print(f"[bold]{report['headline']}[/]")
    header, rows = hit_rate_table(report, bold=lambda s: f"[bold]{s}[/]")
    table = Table(*header, title=f"{report['persona']}: persona score {report['persona_score']:.2f}")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    on_topic = report["on_topic"]
    if on_topic:
        worst = ", ".join(f"{r['topic']} {r['model']:.0%}" for r in on_topic["per_topic"][:3])
        console.print(f"on topic: {on_topic['model']:.0%} of replies (shuffled {on_topic['floor']:.0%}, data "
                      f"{on_topic['ceiling']:.0%}); worst topics: {worst}")
    s, n, b = report["style"], report["novelty"]["model"], report["bits_per_byte"]
    turns = "  ".join(f"turn {r['turn']} {r['on_topic']:.0%}" for r in report["turns"]["per_turn"] if r["on_topic"] is not None)
    console.print(f"copied from train: {n['copied']:.0%} of replies, {n['sentences']:.0%} of sentences"
                  + (f"   on topic over a chat: {turns}" if turns else ""))
    console.print(f"style kept: {s['model']['all']:.0%} (data {s['ceiling']['all']:.0%})  "
                  f"bits/byte: {b['model']:.3f} (untrained {b['floor']:.2f})  time: {seconds:.1f} s")
    console.print(f"report: {report['run']}/eval/report.md")


@app.command()
def compare(
    personas: Annotated[list[str], typer.Argument(help="Two or more personas whose runs/PERSONA models exist.")],
    samples: SamplesOpt = EVAL_SAMPLES,
    seed: SeedOpt = 0,
    out: Annotated[Optional[Path], typer.Option(help="Output folder. Default: runs/compare.")] = None,
    device: DeviceOpt = "auto",
):
    """Score every persona's model against every persona spec; the diagonal should dominate."""
    from guppy.eval.commands import compare as run

    _quiet_datasets()
    with console.status("scoring every model against every persona"):
        result = run(personas=personas, samples=samples, seed=seed, out=out, device=device)
    print_matrix(result)


def print_matrix(result: dict) -> None:
    names = result["models"]
    table = Table("model \\ persona", *names, "margin", title="persona score: each model (row) on each persona (column)")
    for a in names:
        cells = [f"[bold]{result['matrix'][a][b]:.2f}[/]" if a == b else f"{result['matrix'][a][b]:.2f}" for b in names]
        noise = " (within noise)" if result["within_noise"][a] else ""
        table.add_row(a, *cells, f"{result['diagonal_margin'][a]:+.2f}{noise}")
    console.print(table)
    console.print(f"matrix: {result['out']}/matrix.json, {result['out']}/matrix.png")


@app.command()
def runs(
    runs: Annotated[Optional[list[Path]], typer.Argument(metavar="RUN", show_default=False, help="Run folders (what `guppy train --out` made). Default: every run under runs/.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Where the chart goes (PNG). Default: runs/compare-runs.png.")] = None,
    prompt: Annotated[Optional[str], typer.Option(help="Also show each run's reply to this message, side by side.")] = None,
    seed: SeedOpt = 0,
):
    """Compare training runs: a table (preset and what differs, parameters, steps, time, best held-out loss,
    persona score) and one chart of their loss curves; with --prompt, each run's reply to it."""
    from guppy.eval.runs import compare_runs, replies_table, runs_table

    with console.status("reading the runs" + (", sampling their replies" if prompt is not None else "")):
        result = compare_runs(runs=runs, out=out, prompt=prompt, seed=seed)
    console.print(runs_table(result.summaries))
    console.print(f"chart: {result.chart}")
    if result.replies is not None:
        console.print(replies_table(result))


@app.command("run")
@train_options
def run_all(
    persona: Annotated[str, typer.Argument(help="Persona name or YAML path.")] = "guppy",
    n: Annotated[int, typer.Option("--n", min=1, help="Conversations to generate.")] = GENERATE.n,
    **config,
):
    """Everything, end to end: generate-data -> train -> eval -> a few sample replies, with the time of each."""
    import time

    from guppy.model.chat import sample_replies
    from guppy.train.trainer import train as run_train

    _quiet_datasets()
    config = given(config)
    seed = config.get("seed", 0)
    name = check_run_all(persona, n=n, seed=seed, config=config)
    seconds, clock = {}, time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        seconds[stage], clock = time.perf_counter() - clock, time.perf_counter()

    console.rule(f"[bold]1/4[/] generate data: {name}")
    generate_data(persona=persona, n=n, seed=seed, out=None, test_size=GENERATE.test_size, num_proc=GENERATE.num_proc,
                  format=GENERATE.format, overwrite=True, drop_violations=False)
    lap("generate")
    console.rule(f"[bold]2/4[/] train: preset {config.get('preset', 'tiny')}")
    console.print(summary_table("trained", run_train(persona=persona, overwrite=True, **config)))
    lap("train")
    console.rule("[bold]3/4[/] evaluate")
    report = eval_(persona=persona, run=None, samples=EVAL_SAMPLES, seed=seed, device=config.get("device", "auto"))
    lap("eval")
    console.rule("[bold]4/4[/] sample replies")
    replies = sample_replies(persona=persona, seed=seed)
    lap("replies")
    console.print(" · ".join(f"{stage} {s:.1f} s" for stage, s in seconds.items())
                  + f" · total {sum(seconds.values()):.1f} s")
    console.print(f"[bold]{name}: persona score {report['persona_score']:.2f}[/] (0 = an untrained model, 1 = its training data)")
    for prompt, reply in replies:
        console.print(f"[dim]you:[/] {prompt}\n[bold]{name}:[/] {reply}")


def check_run_all(persona: str, *, n: int, seed: int, config: dict) -> str:
    """Every option and output of `guppy run` checked before step 1 replaces runs/PERSONA/data; the persona's name."""
    from guppy.config import resolve_config
    from guppy.spec.personas import load_persona
    from guppy.store.atomic import check_output
    from guppy.store.paths import RunPaths
    from pipeline.generate import check_generate_options

    name = load_persona(persona).name
    check_generate_options(n=n, seed=seed, test_size=GENERATE.test_size, num_proc=GENERATE.num_proc,
                           fmt=GENERATE.format)
    resolve_config(**config)
    paths = RunPaths.for_persona(name)
    for target, kind in ((paths.root, "run"), (paths.data, "dataset"), (paths.eval, "eval")):
        check_output(target, kind)
    return name


@app.command()
def export(
    persona: PersonaArg,
    run: RunOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder. Default: runs/PERSONA/hf (onnx with --onnx, web with --web).")] = None,
    dataset: Annotated[bool, typer.Option("--dataset", help="Also write the training data as a Hub dataset folder (Parquet shards + card) beside it: OUT-dataset.")] = False,
    onnx: Annotated[bool, typer.Option("--onnx", help="Instead: ONNX (fp32 + int8, KV cache, attention as an extra output), checked with onnxruntime. Needs the onnx extra.")] = False,
    web: Annotated[bool, typer.Option("--web", help="Instead: a static web page that chats with the model in the browser and shows its attention (`guppy serve` serves it). Needs the onnx extra.")] = False,
    gguf: Annotated[bool, typer.Option("--gguf", help="Instead: one GGUF file and an Ollama Modelfile, for llama.cpp, Ollama and LM Studio, checked with llama.cpp. Needs the gguf extra.")] = False,
    kind: Annotated[str, typer.Option("--type", help="With --gguf: f16, q8_0 or f32.")] = "f16",
    overwrite: OverwriteOpt = False,
):
    """Write the trained model as a Hugging Face transformers (GPT-2) folder with tokenizer, chat template and model card (or, with --onnx / --web / --gguf, as ONNX, a browser playground or GGUF)."""
    if onnx + web + gguf + dataset > 1:
        raise GuppyError("--onnx, --web, --gguf and --dataset are separate exports; pass one of them")
    if kind != "f16" and not gguf:
        raise GuppyError(f"--type {kind!r} goes with --gguf (e.g. guppy export {persona} --gguf --type q8_0)")
    if gguf:
        from pipeline.cli_shared import export_gguf

        return export_gguf(persona=persona, run=run, out=out, kind=kind, overwrite=overwrite)
    if onnx or web:
        return export_runtime(persona=persona, run=run, out=out, web=web, overwrite=overwrite)
    from guppy.export.hf import export as run_export

    if dataset:
        _quiet_datasets()
    model, *data = run_export(persona=persona, run=run, out=out, dataset=dataset, overwrite=overwrite)
    console.print(f"model: {model} (transformers.AutoModelForCausalLM.from_pretrained('{model}'))")
    for folder in data:
        console.print(f"dataset: {folder} (datasets.load_dataset('{folder}'))")


@app.command()
def serve(
    persona: PersonaArg,
    run: RunOpt = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free one).")] = 8000,
    folder: Annotated[Optional[Path], typer.Option(help="The exported page. Default: runs/PERSONA/web.")] = None,
):
    """Serve the page `guppy export PERSONA --web` wrote, on this machine, and print its URL."""
    from guppy.export.serve import serve as run_serve

    run_serve(persona=persona, run=run, folder=folder, port=port,
              on_ready=lambda line: console.print(line, highlight=False, soft_wrap=True))  # the URL on one line


def export_runtime(*, persona: str, run: Path | None, out: Path | None, web: bool, overwrite: bool) -> None:
    """`export --onnx` and `export --web`: write, check with onnxruntime, print the sizes."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise GuppyError("--onnx and --web need onnxruntime: pip install 'guppy-persona[onnx]'") from None
    if web:
        from guppy.export.web import export_web as run_export
    else:
        from guppy.export.onnx import export_onnx as run_export

    with console.status("tracing the model to ONNX, quantizing to int8, checking both with onnxruntime"):
        meta = run_export(persona=persona, run=run, out=out, overwrite=overwrite)
    table = Table("file", "size", "largest logit difference", "same greedy reply", title=meta["out"])
    for name, c in meta["check"].items():
        table.add_row(name, f"{c['bytes'] / 1e6:.2f} MB", f"{c['max_logit_diff']:.1e}",
                      f"{c['greedy_same']} of {c['greedy_prompts']}")
    console.print(table)
    if web:
        console.print(f"page weight: {meta['page_bytes']['fp32'] / 1e6:.1f} MB with fp32, "
                      f"{meta['page_bytes']['int8'] / 1e6:.1f} MB with int8; open it with [bold]guppy serve {meta['persona']}[/]")


def main() -> None:
    try:
        app()  # typer ends with sys.exit, whatever happened
    except SystemExit as done:
        if not may_exit_now():
            raise
        exit_now(done.code)  # skips CUDA's teardown at exit: ~1 s on a GPU machine


if __name__ == "__main__":
    sys.exit(main())

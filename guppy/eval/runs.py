"""`guppy runs`: several training runs side by side, to see what a change of shape or option did.

For each run folder (one `guppy train` wrote: train_config.json, metrics.jsonl, ckpt/) a row of
facts, read from its files only: persona, preset and what differs from it, parameters, steps,
wall time, best held-out loss, persona score (when `guppy eval` has run). One chart overlays the
loss curves (one colour per run: solid held-out, faint training), and with a prompt each model's
reply to it, all with the same seed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from guppy.errors import GuppyError
from guppy.checks import SEED_MAX, check_number, check_prompt
from guppy.store.atomic import atomic_file, check_output
from guppy.store.charts import colormap, new_figure, save_png
from guppy.store.paths import RUNS_DIR, RUNS_PLOT, RunPaths


@dataclass(frozen=True)
class RunSummary:
    root: Path
    persona: str
    preset: str
    differs: list[str]  # "n_layer=2", in TrainConfig's field order
    params: int
    steps: int
    max_steps: int
    wall_s: float
    best_test_loss: float  # nan when no held-out eval after step 0 was logged
    best_step: int
    persona_score: float | None
    train: list[tuple[int, float]]  # (step, training loss)
    test: list[tuple[int, float]]  # (step, held-out loss)


# ---------------------------------------------------------------------------------- finding runs

def find_runs(runs: list[Path] | None = None) -> list[Path]:
    """The run folders given (a bare name may mean runs/NAME), else every run under runs/."""
    if not runs:
        found = sorted(p.parent for p in RUNS_DIR.glob("*/train_config.json") if not p.parent.name.startswith("."))
        if not found:
            raise GuppyError(f"no runs under {RUNS_DIR}/ (no folder there has a train_config.json); "
                             "train one with `guppy train PERSONA`, or name run folders")
        return found
    folders, problems = [], []
    for run in map(Path, runs):
        if not run.exists() and len(run.parts) == 1 and (RUNS_DIR / run).is_dir():
            run = RUNS_DIR / run
        if not run.is_dir():
            problems.append(f"{run}: {'not a folder' if run.exists() else 'no such folder'}; pass a run folder "
                            "that `guppy train` wrote, e.g. runs/guppy")
        elif not RunPaths(run).config.exists():
            problems.append(f"{run}: not a run folder (no train_config.json); pass a folder that `guppy train` "
                            "wrote, e.g. runs/guppy")
        else:
            folders.append(run)
    if problems:
        raise GuppyError(*problems)
    return folders


# ---------------------------------------------------------------------------------- reading one run

def _read_json(path: Path, fix: str = "train the run again") -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise GuppyError(f"{path}: unreadable ({str(e)[:120]}); {fix}") from None
    if not isinstance(value, dict):
        raise GuppyError(f"{path}: not a JSON object; {fix}")
    return value


def read_metrics(path: Path) -> list[dict]:
    """metrics.jsonl's records. A last line without its newline was cut by an interruption and is
    skipped (as a resume does); any other line that is not a record is an error."""
    try:
        text = path.read_text()
    except OSError as e:
        raise GuppyError(f"{path}: cannot be read ({e.strerror or e}); the run has not logged a step yet, "
                         "or train it again") from None
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            kind = record["kind"]
            int(record["step"])  # a step must be a whole number
            key = {"train": "loss", "eval": "test_loss"}[kind]
            float(record[key])
        except (ValueError, KeyError, TypeError):
            if number == len(lines):  # no newline after it: cut mid-write
                continue
            raise GuppyError(f"{path}: line {number} is not a metrics record; train the run again") from None
        records.append(record)
    if not records:
        raise GuppyError(f"{path}: no logged step yet; train the run for at least one log interval")
    return records


def preset_differences(train: dict) -> tuple[str, list[str]]:
    """(preset, ["field=value", ...]) for every saved training value that is not what the preset alone gives.
    A preset that no longer exists is shown as it was saved, with nothing to compare against."""
    from guppy.config import TrainConfig, resolve_config

    preset = str(train.get("preset", "?"))
    try:
        baseline = resolve_config(preset).model_dump()
    except GuppyError:
        return f"{preset} (unknown now)", []
    return preset, [f"{name}={_show(train[name])}" for name in TrainConfig.model_fields
                    if name in train and name != "preset" and train[name] != baseline[name]]


def _show(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def count_params(model: dict, where: Path) -> int:
    """Parameters of the model shape saved with the run, counted on torch's meta device (nothing allocated)."""
    import torch
    from pydantic import ValidationError

    from guppy.model.gpt import GPT, ModelConfig

    try:
        config = ModelConfig(**model)
    except (ValidationError, TypeError):
        raise GuppyError(f"{where}: its `model` is not a model shape; train the run again") from None
    with torch.device("meta"):
        return GPT(config).num_params()


def dataset_persona(data: str | None) -> str:
    """The persona named in the dataset's persona.yaml (generate-data writes it beside the data), else "-"
    (a JSONL or Parquet file names none)."""
    import yaml

    try:
        spec = yaml.safe_load((Path(data) / "persona.yaml").read_text(encoding="utf-8"))
        return str(spec["identity"]["name"])
    except (OSError, TypeError, KeyError, yaml.YAMLError):
        return "-"


def summarize(run: Path) -> RunSummary:
    paths = RunPaths(Path(run))
    saved = _read_json(paths.config)
    train, model = saved.get("train"), saved.get("model")
    if not isinstance(train, dict) or not isinstance(model, dict):
        raise GuppyError(f"{paths.config}: no `train` and `model` settings; train the run again")
    records = read_metrics(paths.metrics)
    train_curve = [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]
    test_curve = [(r["step"], r["test_loss"]) for r in records if r["kind"] == "eval"]
    trained = [(loss, step) for step, loss in test_curve if step > 0]  # step 0 is the untrained model
    best_loss, best_step = min(trained) if trained else (math.nan, -1)
    score = None
    if (paths.eval / "report.json").exists():
        score = _read_json(paths.eval / "report.json", "evaluate the run again").get("persona_score")
    preset, differs = preset_differences(train)
    try:
        max_steps, wall_s = int(train.get("max_steps", 0)), float(records[-1].get("wall_s", math.nan))
    except (ValueError, TypeError):
        raise GuppyError(f"{paths.root}: max_steps or wall_s is not a number in train_config.json or "
                         "metrics.jsonl; train the run again") from None
    return RunSummary(
        root=paths.root, persona=dataset_persona(saved.get("data")), preset=preset, differs=differs,
        params=count_params(model, paths.config), steps=max(int(r["step"]) for r in records),
        max_steps=max_steps, wall_s=wall_s, best_test_loss=best_loss, best_step=best_step,
        persona_score=float(score) if isinstance(score, (int, float)) else None,
        train=train_curve, test=test_curve)


def summarize_runs(runs: list[Path] | None = None) -> list[RunSummary]:
    """Every run read, or one line per run that cannot be."""
    summaries, problems = [], []
    for run in find_runs(runs):
        try:
            summaries.append(summarize(run))
        except GuppyError as e:
            problems.extend(e.problems)
    if problems:
        raise GuppyError(*problems)
    return summaries


# ---------------------------------------------------------------------------------- showing them

def runs_table(summaries: list[RunSummary]) -> Table:
    table = Table("run", "persona", "preset, and what differs", "parameters", "steps", "wall time",
                  "best held-out loss", "persona score", title="runs")
    for s in summaries:
        steps = f"{s.steps:,}" if s.steps >= s.max_steps else f"{s.steps:,} of {s.max_steps:,}"
        best = f"{s.best_test_loss:.3f} (step {s.best_step:,})" if s.best_step >= 0 else "-"
        table.add_row(escape(str(s.root)), escape(s.persona), escape(", ".join([s.preset, *s.differs])),
                      f"{s.params / 1e6:.2f}M", steps,
                      f"{s.wall_s:.0f} s" if math.isfinite(s.wall_s) else "-", best,
                      "-" if s.persona_score is None else f"{s.persona_score:.2f}")
    return table


def plot_runs(summaries: list[RunSummary], out: Path | None = None) -> Path:
    """The loss curves of every run on one log-y chart, saved atomically as a PNG at `out` (runs/compare-runs.png)."""
    from matplotlib.ticker import ScalarFormatter

    out = Path(out) if out is not None else RUNS_PLOT
    if out.is_dir():
        raise GuppyError(f"{out}: is a folder; pass --out with a file name such as {out / 'compare-runs.png'}")
    fig, ax = new_figure(7.2, 4.2)
    colours = colormap("tab10")
    for i, s in enumerate(summaries):
        colour = colours(i % 10)
        if s.train:
            ax.plot(*zip(*s.train), color=colour, alpha=0.4, linewidth=0.8)
        if s.test:
            ax.plot(*zip(*s.test), color=colour, linewidth=1.8, marker="o", markersize=3,
                    label=f"{s.root.name}: {', '.join([s.preset, *s.differs[:3]])}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss per assistant token (nats)")
    ax.set_yscale("log")
    for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
        axis(ScalarFormatter())  # 2, 3, 4 rather than 2x10^0
    ax.set_title("held-out loss (solid) and training loss (faint)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    with atomic_file(out, kind="chart") as tmp:
        save_png(fig, tmp)
    return out


def replies(summaries: list[RunSummary], prompt: str, *, seed: int) -> list[str]:
    """Each run's reply to `prompt`, sampled as `guppy chat --prompt` does, with the same seed for all."""
    from guppy.model.chat import one_reply

    return [one_reply(s.root, prompt, seed=seed) for s in summaries]


@dataclass(frozen=True)
class Comparison:
    summaries: list[RunSummary]
    chart: Path
    prompt: str | None
    seed: int
    replies: list[str] | None  # one per run, with a prompt


def compare_runs(*, runs: list[Path] | None = None, out: Path | None = None, prompt: str | None = None,
                 seed: int = 0) -> Comparison:
    """`guppy runs`: read the runs (every run under runs/ when none is given), draw the chart, and with a
    prompt sample each run's reply to it."""
    check_number("--seed", seed, ge=0, le=SEED_MAX)
    if prompt is not None:
        check_prompt(prompt)
    check_output(Path(out) if out is not None else RUNS_PLOT, "chart")  # never a user's file, checked before any work
    summaries = summarize_runs(runs)
    chart = plot_runs(summaries, out)
    answers = replies(summaries, prompt, seed=seed) if prompt is not None else None
    return Comparison(summaries, chart, prompt, seed, answers)


def replies_table(c: Comparison) -> Table:
    table = Table(*(escape(s.root.name) for s in c.summaries), title=f"you: {escape(c.prompt)}  (seed {c.seed})")
    table.add_row(*map(escape, c.replies))
    return table

"""What a training run shows and leaves behind while it runs: metrics.jsonl (appended as it goes,
cut back to the checkpoint on --resume), loss.png, and the rich progress bar."""

from __future__ import annotations

import json
import math
from pathlib import Path

from guppy.store.atomic import atomic_file
from guppy.store.charts import new_figure, save_png


class Metrics:
    """metrics.jsonl: one JSON object per train log or eval, appended as they come (rank 0 only)."""

    def __init__(self, path: Path, *, keep_until: int, enabled: bool):
        self.path, self.enabled, self.records = path, enabled, []
        if enabled and path.exists():  # resume: keep what came up to the checkpoint, forget the rest
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():  # bad bytes: a bad line
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut by the interruption
                if not isinstance(record, dict) or not isinstance(record.get("step", math.inf), (int, float)):
                    continue  # not one of ours
                if record.get("step", math.inf) <= keep_until:
                    self.records.append(record)
        if enabled:
            with atomic_file(path) as tmp:
                tmp.write_text("".join(json.dumps(r) + "\n" for r in self.records))

    def log(self, **record) -> None:
        self.records.append(record)
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


def plot_losses(records: list[dict], path: Path, title: str) -> None:
    train = [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]
    test = [(r["step"], r["test_loss"]) for r in records if r["kind"] == "eval"]
    fig, ax = new_figure(6.4, 3.8)
    if train:
        ax.plot(*zip(*train), label="train", color="#2b7bba", linewidth=1)
    if test:
        ax.plot(*zip(*test), label="held-out", color="#d95f02", marker="o", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss per assistant token (nats)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    with atomic_file(path) as tmp:
        save_png(fig, tmp)


def progress_bar(enabled: bool, total: int):
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    progress = Progress(
        TextColumn("[bold]train[/]"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  held-out {task.fields[test]}  {task.fields[speed]} tok/s"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), disable=not enabled)
    task = progress.add_task("train", total=total, loss="-", test="-", speed="-")
    return progress, task

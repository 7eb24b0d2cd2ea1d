"""Where `guppy train` writes, so that a fresh run never costs the user the run it replaces.

A fresh run over a run that already has a tokenizer or checkpoints trains in a temporary sibling
(`runs/.PERSONA.fresh-PID/`) and swaps its tokenizer, checkpoints, metrics and config into the run
folder when it finishes, or when Ctrl-C stops it with a resumable checkpoint (so that the printed
`--resume` command works). Killed, crashed, or refused (bad data, a bad option): the old run is
untouched, the new tokenizer never replaced it, and the sibling is removed the next time the run is
written (guppy/store/atomic.py's leftovers). A first run, with nothing to protect, trains in place, so a
run killed at any moment can still be resumed.

The run's data/, eval/ and hf/ are not the trainer's and stay where they are.
"""

from __future__ import annotations

import os
import shlex
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from guppy.store.atomic import MARKER, _remove, clean_leftovers, owner_pid, swap_in, write_marker
from guppy.store.paths import RunPaths

TRAINER_ITEMS = ("tokenizer", "ckpt", "train_config.json", "metrics.jsonl", "loss.png")


class SavedInterrupt(KeyboardInterrupt):
    """Ctrl-C, after the trainer saved a resumable checkpoint of where it stopped."""


@contextmanager
def training_folder(paths: RunPaths, *, fresh: bool, main: bool) -> Iterator[RunPaths]:
    """Yield the RunPaths the trainer writes to: `paths` itself, or a temporary sibling that
    replaces the trainer's part of `paths` when the block ends (or stops with SavedInterrupt)."""
    root = paths.root
    if main:
        for name in ("", *TRAINER_ITEMS):  # a swap a dead process did not finish: put the old back
            clean_leftovers(root / name if name else root)
    if not fresh or not (paths.tokenizer.exists() or (root / "ckpt").exists()):
        yield paths
        if main:
            mark(root)
        return
    staging = RunPaths(root.with_name(f".{root.name}.fresh-{owner_pid()}"))
    if main:
        _remove(staging.root)
        staging.root.mkdir(parents=True)
    try:
        yield staging
    except SavedInterrupt:
        if main:
            replace_trainer_items(staging.root, root)
        raise
    except BaseException:
        if main:
            _remove(staging.root)
        raise
    if main:
        replace_trainer_items(staging.root, root)


def replace_trainer_items(staging: Path, root: Path) -> None:
    """The new run's tokenizer, checkpoints, metrics and config in place of the old run's, in a few
    renames (the old ones aside first, removed last)."""
    new = [(staging / name, root / name) for name in TRAINER_ITEMS if os.path.lexists(staging / name)]
    stale = [root / name for name in TRAINER_ITEMS
             if os.path.lexists(root / name) and not os.path.lexists(staging / name)]
    swap_in(new)
    for path in stale:  # an old loss.png beside a new model would tell its story
        _remove(path)
    _remove(staging)
    mark(root)


def mark(root: Path) -> None:
    if root.is_dir() and not (root / MARKER).exists():
        write_marker(root, "run")


def resume_command(persona: str, *, out: Path | None, data: Path | None, preset: str, seed: int,
                   max_steps: int | None) -> str:
    """The command that continues this run: the options that decide it, as they were given."""
    words = ["guppy", "train", str(persona)]
    for flag, value, default in (("--data", data, None), ("--out", out, None), ("--preset", preset, "tiny"),
                                 ("--seed", seed, 0), ("--max-steps", max_steps, None)):
        if value is not None and value != default:
            words += [flag, str(value)]
    return shlex.join(words + ["--resume"])


class StopOnInterrupt:
    """The first Ctrl-C asks the loop to save a checkpoint and stop at the next step boundary
    (a KeyboardInterrupt in the middle of an optimizer step would leave nothing consistent
    to save); a second one stops at once. Only in a single process's main thread."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False

    def __enter__(self):
        if self.enabled:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self.previous)

    def __exit__(self, *exc):
        if self.enabled:
            signal.signal(signal.SIGINT, self.previous)

"""Where a replayed training step of the guppy preset goes, on its real batches (guppy/train/captured.py). On a GPU
machine, after `guppy generate-data guppy`:

    python3 tests/bench/bench_replay.py [--at 150]

Trains the preset into a temporary folder and, at step `--at`, measures: the loop's own pace over the 100 steps
before (wall / step, both ends synchronized); the same captured step replayed back to back on that step's batch,
and on random tokens (what tests/bench/bench_gpu_step.py measures); the step launched in the open (these three
timed as bench_gpu_step.py times: the median of 5 x 10 after 3); then the kernels
of 5 replays (torch.profiler), most GPU time first. The run goes on afterwards (its figures are not a run's).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from guppy.train import trainer as trainer_module  # noqa: E402
from tests.bench.bench_gpu_step import timed  # noqa: E402


def measure(trainer, loop_ms: float) -> None:
    steps = trainer.captured
    print(f"the loop, steps {trainer.step - 100}-{trainer.step}: {loop_ms:.2f} ms a step")
    print(f"replayed back to back, this step's batch: {timed(steps.graph.replay):.2f} ms")
    x, y = steps.x.clone(), steps.y.clone()
    steps.x.copy_(torch.randint_like(x, 0, trainer.mconf.vocab_size))
    steps.y.copy_(torch.randint_like(y, 0, trainer.mconf.vocab_size).masked_fill(torch.rand(y.shape,
                                                                                           device=y.device) < 0.5, -1))
    print(f"replayed back to back, random tokens: {timed(steps.graph.replay):.2f} ms")
    steps.x.copy_(x), steps.y.copy_(y)
    print(f"launched in the open, this step's batch: {timed(lambda: steps._step(steps.positions)):.2f} ms")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                            torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            steps.graph.replay()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=70))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--at", type=int, default=150)
    args = ap.parse_args()
    marks = {}
    real = trainer_module.Trainer.train_step

    def train_step(self, model, x, y, n_global):
        if self.step in (args.at - 100, args.at):
            torch.cuda.synchronize()
            marks[self.step] = time.perf_counter()
        if self.step == args.at and self.captured is not None:
            measure(self, (marks[args.at] - marks[args.at - 100]) / 100 * 1e3)
        real(self, model, x, y, n_global)

    trainer_module.Trainer.train_step = train_step
    with tempfile.TemporaryDirectory() as out:
        trainer_module.train(persona="guppy", preset="guppy", out=Path(out) / "guppy", progress=False)


if __name__ == "__main__":
    main()

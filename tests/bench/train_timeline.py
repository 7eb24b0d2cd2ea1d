"""When each stage of `guppy train` starts and ends, in seconds since the command was launched (as
eval_timeline.py does for `guppy eval`). On the device machine, after a first `guppy train` (caches warm):

    python3 tests/bench/train_timeline.py $EPOCHREALTIME guppy --preset guppy
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
LAUNCHED = float(sys.argv.pop(1))
print(f"{time.time() - LAUNCHED:6.2f}  python started, imports next", file=sys.stderr)

import cli  # noqa: E402
import atexit  # noqa: E402

import guppy.model.checkpoint as checkpoint  # noqa: E402
import guppy.model.gpt as gpt  # noqa: E402
import guppy.train.trainer as trainer  # noqa: E402


def timed(owner, name: str, calls: int = 1_000_000) -> None:
    """Print start and end of each of the first `calls` calls of owner.name."""
    fn, seen = getattr(owner, name), [0]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        seen[0] += 1
        if seen[0] > calls:
            return fn(*args, **kwargs)
        start = time.time() - LAUNCHED
        try:
            return fn(*args, **kwargs)
        finally:
            print(f"{start:6.2f} {time.time() - LAUNCHED:6.2f}  {name}", file=sys.stderr)
    setattr(owner, name, wrapper)


timed(trainer, "Processes")
timed(trainer, "Elsewhere")
timed(trainer, "build_optimizer")
timed(trainer, "warm_up")
timed(trainer, "held_out_loss")
timed(checkpoint.CheckpointWriter, "save")
timed(checkpoint, "save_checkpoint")  # in the writer's thread
for name in ("__init__", "_prepare", "_test_rows", "run", "_evaluate", "checkpoint", "_plot", "_log"):
    timed(trainer.Trainer, name)
timed(trainer.Trainer, "train_step", calls=3)
timed(gpt.GPT, "__init__", calls=1)
atexit.register(lambda: print(f"{time.time() - LAUNCHED:6.2f}  atexit", file=sys.stderr))
print(f"{time.time() - LAUNCHED:6.2f}  imported", file=sys.stderr)
sys.argv = ["guppy", "train", *sys.argv[1:]]
cli.main()

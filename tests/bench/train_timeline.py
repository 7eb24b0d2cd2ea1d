"""When each stage of `guppy train` starts and ends, in seconds since the command was launched (as
eval_timeline.py does for `guppy eval`). On the device machine, after a first `guppy train` (caches warm):

    python3 tests/bench/train_timeline.py $EPOCHREALTIME guppy --preset guppy
"""

from __future__ import annotations

import atexit
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench.timeline import stamp, timed  # noqa: E402  (takes the launch time off the arguments)

stamp("python started, imports next")
import cli  # noqa: E402
import guppy.model.checkpoint as checkpoint  # noqa: E402
import guppy.model.gpt as gpt  # noqa: E402
import guppy.train.trainer as trainer  # noqa: E402

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
atexit.register(stamp, "atexit")
stamp("imported")
sys.argv = ["guppy", "train", *sys.argv[1:]]
cli.main()

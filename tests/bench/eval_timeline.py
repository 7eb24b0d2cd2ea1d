"""When each stage of `guppy eval` starts and ends, in seconds since the command was launched (a profiler cannot
say: Python 3.12's cProfile mixes up threads). On the device machine, after a `guppy train`:

    python3 tests/bench/eval_timeline.py $EPOCHREALTIME [eval options...]
"""

from __future__ import annotations

import atexit
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench.timeline import stamp, timed  # noqa: E402  (takes the launch time off the arguments)

stamp("python started, imports next")
import cli  # noqa: E402
import guppy.eval.commands as commands  # noqa: E402
import guppy.eval.evaluate as evaluate  # noqa: E402
import guppy.eval.on_topic as on_topic  # noqa: E402

for name in ("load_model", "load_eval_data", "measure", "write_report", "evaluate"):
    timed(commands, name)
for name in ("score_model", "untrained_like", "answer_figures", "run_chats", "turn_figures"):
    timed(evaluate, name)
timed(on_topic.ClassifierElsewhere, "predict")
atexit.register(stamp, "atexit")
stamp("imported")
sys.argv = ["guppy", "eval", "guppy", *sys.argv[1:]]
cli.main()

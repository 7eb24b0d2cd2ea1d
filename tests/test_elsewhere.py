"""guppy/elsewhere.py: the second process a GPU command gives its CPU work to (the topic classifier, charts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from guppy.elsewhere import Elsewhere

ROOT = Path(__file__).resolve().parents[1]


def test_work_runs_in_another_process_in_order_and_its_errors_come_back_as_they_were():
    with Elsewhere() as elsewhere:
        pids = [elsewhere.submit(os.getpid) for _ in range(3)]
        failed = elsewhere.submit(int, "not a number")
        assert elsewhere.submit(sorted, [3, 1, 2]).result() == [1, 2, 3]
        assert len({p.result() for p in pids}) == 1 and pids[0].result() != os.getpid()
        with pytest.raises(ValueError, match="not a number"):
            failed.result()


def test_a_process_that_died_fails_what_it_had_and_what_comes_after_instead_of_hanging():
    elsewhere = Elsewhere()
    sleeping = elsewhere.submit(__import__("time").sleep, 30)
    elsewhere.process.kill()
    with pytest.raises(RuntimeError, match="helper process ended"):
        sleeping.result(timeout=20)
    with pytest.raises(RuntimeError, match="helper process ended"):
        elsewhere.submit(os.getpid).result(timeout=20)
    elsewhere.close()


def test_a_script_without_a_main_guard_runs_once(tmp_path):
    """multiprocessing's spawn would import the caller's script again in the child: a script that trains at
    its top level, as tests and notebooks do, would run twice or fail. The worker is `python -m guppy.elsewhere`."""
    script = tmp_path / "unguarded.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nprint('top level ran')\n"
                      "from guppy.elsewhere import Elsewhere\n"
                      "with Elsewhere() as e:\n    print(e.submit(sum, [1, 2]).result())\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["top level ran", "3"]


def wait_for(path: str) -> None:  # in the worker: holds it until the test lets it go
    while not Path(path).exists():
        __import__("time").sleep(0.01)


def test_submitting_a_large_request_never_waits_for_a_busy_worker(tmp_path):
    """A pipe holds 64 KB and a busy worker (importing sklearn, say) reads none: a request larger than that is sent by
    a thread of Elsewhere's own, so that the command goes on (the topic classifier's replies are 1.5 MB)."""
    import threading

    gate = tmp_path / "gate"
    with Elsewhere() as elsewhere:
        elsewhere.submit(wait_for, str(gate))
        futures = []
        sending = threading.Thread(target=lambda: futures.append(elsewhere.submit(len, "x" * 3_000_000)))
        sending.start()
        sending.join(timeout=20)
        returned = not sending.is_alive()
        gate.touch()
        assert returned, "submit waited for the worker"
        assert futures[0].result(timeout=20) == 3_000_000


def test_what_the_helpers_run_imports_no_torch():
    """A helper imports the modules of the work it is given. Were torch among them, its first ~1.5 s on a GPU machine
    would go to that import while the evaluator waits for the ceiling's figures (as it did once: 1.9 s)."""
    helpers_run = ["guppy.eval.replies", "guppy.eval.on_topic", "guppy.eval.report", "guppy.train.metrics"]
    code = (f"import importlib, sys\nfor m in {helpers_run!r}:\n    importlib.import_module(m)\n"
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0

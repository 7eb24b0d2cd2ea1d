"""A second process for the CPU work of a command whose model runs on a GPU.

While the GPU samples, this process's other CPU cores idle. What needs only a CPU and a library the model does
not use (scikit-learn's import and the topic classifier's fit, matplotlib's import and the charts: ~4 s of a GPU
`guppy eval`, tests/bench/GPU_NOTES.md) runs there meanwhile. On a CPU that work stays in the command's own
process, since the model needs those cores.

The process is a fresh interpreter (`python -m guppy.elsewhere`), not a fork: this one holds a CUDA context, which
a forked child cannot use or safely copy. Nor is it multiprocessing's spawn, which imports the caller's main
script again in the child, so that a script calling `train()` without `if __name__ == "__main__":` would run twice
(or fail). Work goes to it as pickles on its stdin and comes back in order on its stdout, one at a time; it
imports `warm` first, so that the first piece of work does not wait for its libraries.
"""

from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
import threading
from collections import deque
from concurrent.futures import Future
from pathlib import Path

SKLEARN = ("sklearn.feature_extraction.text", "sklearn.naive_bayes", "sklearn.pipeline")
MATPLOTLIB = ("matplotlib.figure", "matplotlib.backends.backend_agg")


class Elsewhere:
    """One worker process; `submit(fn, *args)` runs fn(*args) there (fn a module's function, args picklable) and
    returns a Future of its result.

    Used as a context manager: leaving it waits for what was submitted (nothing is left half-written) and ends
    the process; leaving on an error ends it at once."""

    def __init__(self, warm: tuple[str, ...] = ()):
        root = str(Path(__file__).resolve().parents[1])  # where guppy is, installed or not
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen([sys.executable, "-m", "guppy.elsewhere", *warm], env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        self.pending: deque[Future] = deque()  # submitted, not yet answered, in order
        self.lock = threading.Lock()
        self.ended: Exception | None = None  # once the process is gone: what every later result raises
        # Requests are written by a thread of their own: a pipe holds 64 KB, and the worker reads nothing until its
        # imports are done (~2 s for sklearn), so writing the classifier's 1.5 MB of replies here would wait as long.
        self.requests: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.writer.start()
        self.reader.start()

    def submit(self, fn, *args) -> Future:
        request, future = pickle.dumps((fn, args)), Future()  # pickled whole first: a failure sends nothing
        with self.lock:  # a request and its place in the queue go together
            if self.ended:
                future.set_exception(self.ended)
                return future
            self.pending.append(future)
            self.requests.put(request)
        return future

    def _write(self) -> None:
        while (request := self.requests.get()) is not None:
            try:
                self.process.stdin.write(request)
                self.process.stdin.flush()
            except OSError:  # the process is gone; the reader fails what it had not answered
                return
        try:
            self.process.stdin.close()  # the worker's end of input: it finishes what it has and exits
        except OSError:
            pass

    def _read(self) -> None:
        while True:
            try:
                ok, value = pickle.load(self.process.stdout)
            except Exception:  # EOF: the process ended (closed, or died)
                break
            future = self.pending.popleft()
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        self.process.wait()
        with self.lock:
            self.ended = RuntimeError(f"guppy's helper process ended (exit code {self.process.returncode}) "
                                      "before it answered")
            while self.pending:
                self.pending.popleft().set_exception(self.ended)

    def close(self, *, cancel: bool = False) -> None:
        if cancel:
            self.process.kill()
        self.requests.put(None)  # after what was submitted: then the worker's input ends
        self.process.wait()
        self.writer.join()
        self.reader.join()

    def __enter__(self) -> Elsewhere:
        return self

    def __exit__(self, kind, error, trace) -> None:
        self.close(cancel=kind is not None)


def serve(warm: list[str]) -> None:
    """The worker: import `warm`, then run each (fn, args) read from stdin, answering (ok, result or error)."""
    import importlib
    import traceback

    answers = os.fdopen(os.dup(1), "wb")  # the answers' own channel: whatever the work prints goes to stderr
    os.dup2(2, 1)
    for module in warm:
        importlib.import_module(module)
    requests = sys.stdin.buffer
    while True:
        try:
            fn, args = pickle.load(requests)
        except EOFError:  # every answer is written and flushed: leave without the interpreter's teardown, which
            sys.stderr.flush()  # with sklearn or matplotlib loaded took ~0.4 s that the caller's close() waited for
            os._exit(0)
        try:
            answer = (True, fn(*args))
        except Exception as e:
            answer = (False, e)
        try:
            data = pickle.dumps(answer)
        except Exception:  # an error that does not pickle: its text does
            data = pickle.dumps((False, RuntimeError(traceback.format_exc())))
        answers.write(data)
        answers.flush()


if __name__ == "__main__":
    serve(sys.argv[1:])

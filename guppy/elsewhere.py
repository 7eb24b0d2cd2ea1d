"""A second process for the CPU work of a command whose model runs on a GPU.

While the GPU samples, this process's other CPU cores idle. What needs only a CPU and a library the model does
not use (scikit-learn's import and the topic classifier's fit, matplotlib's import and the eval charts: ~4 s of a
GPU `guppy eval`, tests/bench/GPU_NOTES.md) runs there meanwhile. On a CPU that work stays in the command's own
process, since the model needs those cores.

The process is spawned, not forked: this one holds a CUDA context, which a forked child cannot use or safely copy.
It starts at once and imports `warm` first, so that the first piece of work does not wait for its libraries.
"""

from __future__ import annotations

import importlib
import multiprocessing
import signal
from concurrent.futures import Future, ProcessPoolExecutor

SKLEARN = ("sklearn.feature_extraction.text", "sklearn.naive_bayes", "sklearn.pipeline")
MATPLOTLIB = ("matplotlib.figure", "matplotlib.backends.backend_agg")


class Elsewhere:
    """One worker process; `submit(fn, *args)` runs fn(*args) there (fn a module's function, args picklable).

    Used as a context manager: leaving it waits for what was submitted (nothing is left half-written) and ends
    the process; leaving on an error cancels what has not started."""

    def __init__(self, warm: tuple[str, ...] = ()):
        self.pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_start, initargs=(warm,))
        self.pool.submit(int)  # the pool starts its process at the first submit: now, not when work comes

    def submit(self, fn, *args) -> Future:
        return self.pool.submit(fn, *args)

    def close(self, *, cancel: bool = False) -> None:
        self.pool.shutdown(wait=True, cancel_futures=cancel)

    def __enter__(self) -> Elsewhere:
        return self

    def __exit__(self, kind, error, trace) -> None:
        self.close(cancel=kind is not None)


def _start(warm: tuple[str, ...]) -> None:
    # Ctrl-C reaches every process of the terminal's group: the command stops this one (close), so that the
    # worker does not print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for module in warm:
        importlib.import_module(module)

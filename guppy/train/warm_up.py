"""A GPU run's first second, overlapped (guppy/train/trainer.py).

CUDA loads each kernel the first time it runs, and cuBLAS and the caching allocator set themselves up on the first
matmuls and tensors of each size: the guppy preset's first held-out eval and first step took 0.44 s and 0.52 s on an
H200, against 22 ms a step after (tests/bench/train_timeline.py). Building the first torch optimizer imports
torch._dynamo (torch.optim wraps its methods with it): 1.2 s of Python. Neither needs the other, so the import runs
in a thread (from when the data is read) while this one makes the model and runs a forward and backward on a few
rows; loading kernels happens in CUDA, outside the GIL. The gradients are then dropped and the random state is
restored, so the run goes on exactly as without.
"""

from __future__ import annotations

import importlib
import sys
import threading

import torch

IMPORTED_BY_TORCH_OPTIM = ("torch._dynamo",)


def import_meanwhile(modules: tuple[str, ...] = IMPORTED_BY_TORCH_OPTIM) -> threading.Thread:
    """Start importing `modules` in a thread; `warm_up` waits for it. Started once the data is read (whose first
    reading imports `datasets`), so that it overlaps the model's making as well."""
    thread = threading.Thread(target=_import, args=(modules,), daemon=True)
    thread.start()
    return thread


def warm_up(model, x: torch.Tensor, y: torch.Tensor, autocast, importing: threading.Thread) -> None:
    """One forward and backward of `model` on rows x, y (on its device), then wait for `importing`."""
    switch = sys.getswitchinterval()
    # The GIL changes hands every 0.1 ms instead of 5: each op of the forward waits for it no longer than that.
    sys.setswitchinterval(1e-4)
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []), autocast:
            _, loss = model(x, y, reduction="sum")
        loss.backward()
        model.zero_grad(set_to_none=True)
    finally:
        importing.join()
        sys.setswitchinterval(switch)


def _import(modules: tuple[str, ...]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception:  # whoever needs it imports it again, and raises there
            pass

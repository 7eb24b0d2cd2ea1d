"""Can CUDA's start overlap Python's imports? (issue 26: `guppy train` spends seconds before its first step.)

    python3 tests/bench/bench_cuda_start.py          # prints both ways, each in a fresh process, 3 times

sequential: import torch, make the CUDA context, then import torch._dynamo (which torch.optim imports when the
first optimizer is built). threaded: the context is made in a thread while the main thread imports.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

CHILD = r'''
import threading, time, sys
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
start = lambda: torch.zeros(1, device="cuda")
if sys.argv[1] == "threaded":
    th = threading.Thread(target=start)
    th.start()
    import torch._dynamo
    th.join()
else:
    start()
    import torch._dynamo
torch.cuda.synchronize()
print(f"{t1 - t0:.3f} {time.perf_counter() - t1:.3f}")
'''


def main() -> None:
    results = {"sequential": [], "threaded": []}
    for _ in range(3):
        for way in results:
            out = subprocess.run([sys.executable, "-c", CHILD, way], capture_output=True, text=True, check=True)
            results[way].append([float(v) for v in out.stdout.split()])
    for way, runs in results.items():
        print(f"{way:10s} import torch {statistics.median(r[0] for r in runs):.2f} s; then CUDA + torch._dynamo "
              f"{statistics.median(r[1] for r in runs):.2f} s (runs: {', '.join(f'{r[1]:.2f}' for r in runs)})")


if __name__ == "__main__":
    main()

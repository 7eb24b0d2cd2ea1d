"""Benchmark `guppy generate-data`: in-process pipeline time and whole-command wall time.

    python tests/bench/bench_data.py [--persona guppy] [--n 60000] [--repeats 3] [--big 1000000]

Prints medians (the machines are shared and noisy): the pipeline (render, dedup, split, save)
timed inside one process, the whole CLI command with Python start-up, and optionally a
--big run with --num-proc 1 and 2 to show how it scales.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def pipeline_seconds(persona: str, n: int, num_proc: int, out: Path) -> float:
    from pipeline.generate import generate_data

    t = time.perf_counter()
    generate_data(persona=persona, n=n, out=out, num_proc=num_proc, overwrite=True)
    return time.perf_counter() - t


def command_seconds(persona: str, n: int, num_proc: int, out: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "cli.py"), "generate-data", persona, "--n", str(n),
                    "--num-proc", str(num_proc), "--out", str(out), "--overwrite"],
                   check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--persona", default="guppy")
    ap.add_argument("--n", type=int, default=60_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--big", type=int, default=0, help="also time this many conversations with 1 and 2 processes")
    args = ap.parse_args()
    import datasets

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "data"
        for procs in (1, 2):
            runs = [pipeline_seconds(args.persona, args.n, procs, out) for _ in range(args.repeats)]
            print(f"pipeline  {args.persona} n={args.n:,} num_proc={procs}: median {statistics.median(runs):.2f} s "
                  f"({', '.join(f'{r:.2f}' for r in runs)})")
        runs = [command_seconds(args.persona, args.n, 2, out) for _ in range(args.repeats)]
        print(f"command   guppy generate-data {args.persona} --n {args.n} (Python start included): "
              f"median {statistics.median(runs):.2f} s wall")
        if args.big:
            for procs in (1, 2):
                s = pipeline_seconds(args.persona, args.big, procs, out)
                print(f"big       n={args.big:,} num_proc={procs}: {s:.1f} s ({args.big / s:,.0f} conversations/s)")


if __name__ == "__main__":
    main()

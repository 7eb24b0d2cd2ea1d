"""Benchmark `guppy generate-data`: in-process pipeline time and whole-command wall time.

    python tests/bench/bench_data.py [--persona guppy] [--n 60000] [--repeats 3] [--big 1000000]

Prints medians (the machines are shared and noisy): the pipeline (render, dedup, measure,
split, save) timed inside one process, with the CPU seconds it used in this process and in
its workers; the whole CLI command with Python start-up; and optionally a --big run to show
how it scales. The targets for 60K on 2 cores: pipeline <= 5 s, command <= 8 s, and --big in
proportion. The load average is printed too: with another job on the machine, wall times grow
while CPU seconds stay put.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def pipeline_seconds(persona: str, n: int, num_proc: int, out: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds of this process, CPU seconds of its worker processes."""
    from pipeline.generate import generate_data

    t, cpu, before = time.perf_counter(), time.process_time(), os.times()
    generate_data(persona=persona, n=n, out=out, num_proc=num_proc, overwrite=True)
    after = os.times()
    workers = (after.children_user + after.children_system) - (before.children_user + before.children_system)
    return time.perf_counter() - t, time.process_time() - cpu, workers


def command_seconds(persona: str, n: int, num_proc: int, out: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "cli.py"), "generate-data", persona, "--n", str(n),
                    "--num-proc", str(num_proc), "--out", str(out), "--overwrite"],
                   check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t


def load() -> str:
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--persona", default="guppy")
    ap.add_argument("--n", type=int, default=60_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="--num-proc values for the pipeline runs")
    ap.add_argument("--big", type=int, default=0, help="also time this many conversations (once per --big-procs)")
    ap.add_argument("--big-procs", type=int, nargs="+", default=[2], help="--num-proc values for the --big run")
    args = ap.parse_args()
    import datasets

    datasets.disable_progress_bars()
    print(load())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "data"
        for procs in args.procs:
            runs = [pipeline_seconds(args.persona, args.n, procs, out) for _ in range(args.repeats)]
            wall, cpu, workers = (statistics.median(r[i] for r in runs) for i in range(3))
            print(f"pipeline  {args.persona} n={args.n:,} num_proc={procs}: median {wall:.2f} s "
                  f"({', '.join(f'{r[0]:.2f}' for r in runs)}); CPU {cpu:.2f} s here + {workers:.2f} s in workers")
        runs = [command_seconds(args.persona, args.n, 2, out) for _ in range(args.repeats)]
        print(f"command   guppy generate-data {args.persona} --n {args.n} (Python start included): "
              f"median {statistics.median(runs):.2f} s wall ({', '.join(f'{r:.2f}' for r in runs)})")
        for procs in args.big_procs if args.big else []:
            wall, cpu, workers = pipeline_seconds(args.persona, args.big, procs, out)
            print(f"big       n={args.big:,} num_proc={procs}: {wall:.1f} s ({args.big / wall:,.0f} conversations/s); "
                  f"CPU {cpu:.1f} s here + {workers:.1f} s in workers")
    print(load())


if __name__ == "__main__":
    main()

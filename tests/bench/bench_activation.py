"""GELU against ReLU, side by side: which should the presets use? (`guppy export --gguf` writes both
exactly; llama.cpp's gpt2 graph is GELU, so a GELU model needs no rewrite.)

    python tests/bench/bench_activation.py --jobs 4                  # tiny and small, relu and gelu
    python tests/bench/bench_activation.py --presets tiny --max-steps 20 --samples 1   # does it run?

Each job is `guppy train PERSONA --preset P --activation A --seed S` on the same dataset (default
runs/PERSONA/data), then `guppy eval` of that run, each command in its own process with
OMP_NUM_THREADS=2 (and torch's threads alike), `--jobs` of them at a time: on a quiet machine with
2 x jobs cores they run on equal terms. Compare the rows with each other, never with another machine.
The table: train seconds (the whole `guppy train` command), best held-out loss, persona score and,
where the report has it, on-topic.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def guppy(*args: str, threads: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, env=env,
                          cwd=ROOT)


def run_job(job: dict, *, persona: str, data: Path, folder: Path, threads: int, steps: int | None,
            samples: int) -> dict:
    """Train then evaluate one (preset, activation); the figures, or the error's last line."""
    out = folder / f"{job['preset']}-{job['activation']}"
    train = ["train", persona, "--data", str(data), "--out", str(out), "--preset", job["preset"],
             "--activation", job["activation"], "--seed", str(job["seed"]), "--device", "cpu"]
    started = time.perf_counter()
    done = guppy(*train, *(["--max-steps", str(steps)] if steps else []), threads=threads)
    train_s = time.perf_counter() - started
    if done.returncode == 0:  # measured on the held-out split of the same dataset
        done = guppy("eval", persona, "--run", str(out), "--data", str(data), "--samples", str(samples),
                     threads=threads)
    if done.returncode != 0:
        return {**job, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    report = json.loads((out / "eval" / "report.json").read_text())
    return {**job, "train_s": train_s, "held_out": min(r["test_loss"] for r in evals if r["kind"] == "eval"),
            "persona": report["persona_score"], "on_topic": (report.get("on_topic") or {}).get("score")}


def table(rows: list[dict]) -> str:
    lines = ["| preset | activation | train s | held-out loss | persona score | on-topic |",
             "|--------|------------|---------|---------------|---------------|----------|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['preset']} | {r['activation']} | error: {r['error'][:100]} |")
            continue
        on_topic = "-" if r["on_topic"] is None else f"{r['on_topic']:.2f}"
        lines.append(f"| {r['preset']} | {r['activation']} | {r['train_s']:.0f} | {r['held_out']:.3f} | "
                     f"{r['persona']:.2f} | {on_topic} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--persona", default="guppy")
    ap.add_argument("--data", type=Path, default=None, help="dataset of every job (default: runs/PERSONA/data)")
    ap.add_argument("--presets", default="tiny,small")
    ap.add_argument("--seed", type=int, default=0, help="training seed of every job")
    ap.add_argument("--jobs", type=int, default=1, help="jobs at a time (each takes --threads cores)")
    ap.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of each job")
    ap.add_argument("--max-steps", type=int, default=None, help="default: each preset's own")
    ap.add_argument("--samples", type=int, default=4, help="guppy eval --samples")
    ap.add_argument("--keep", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = ap.parse_args()
    data = (args.data or ROOT / "runs" / args.persona / "data").resolve()
    if not data.exists():
        sys.exit(f"{data}: no dataset; run `guppy generate-data {args.persona}` first")
    jobs = [{"preset": p, "activation": a, "seed": args.seed}
            for p in args.presets.split(",") for a in ("relu", "gelu")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = (args.keep or Path(tmp)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(lambda j: run_job(j, persona=args.persona, data=data, folder=folder,
                                                   threads=args.threads, steps=args.max_steps, samples=args.samples),
                                 jobs))
    print(table(rows))


if __name__ == "__main__":
    main()

"""A/B of training recipes on one machine, in one run: held-out loss and persona score for each.

    python tests/bench/bench_optim.py                        # AdamW vs Muon, tiny and small (the issue's table)
    python tests/bench/bench_optim.py --parallel 6 --threads 2 --train-seeds 0,1,2 \\
        --job '{"preset": "tiny", "lr": 8e-3}' --job '{"preset": "tiny", "batch_size": 24}'

Each job is a `guppy.train.trainer.train` config (preset + overrides) trained on --data (default runs/guppy/data)
with `--threads` torch threads, then scored with `guppy eval`'s persona score. Jobs run `--parallel` at
a time, each in its own process, so on a machine with 2 x parallel cores they run side by side on
equal terms (compare them with each other, not with another machine). Without --job it runs the
default table: for tiny and small, AdamW and Muon at the preset's steps (equal steps), then AdamW
again for as many steps as Muon's training time allowed it (equal wall time).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

JOB = """
import json, sys, time, torch
sys.path.insert(0, {root!r})
torch.set_num_threads({threads})
from guppy.eval.commands import evaluate
from guppy.train.trainer import train
job = json.loads({job!r})
persona = job.get("persona", "guppy")
started = time.perf_counter()
summary = train(persona=persona, data={data!r}, out={out!r}, progress=False,
                **{{k: v for k, v in job.items() if k != "persona"}})
reports = [evaluate(persona=persona, run={out!r}, samples=4, seeds=[s], device=job.get("device", "auto"))
           for s in {eval_seeds!r}]
scores = sorted(r["persona_score"] for r in reports)
topical = sorted((r.get("on_topic") or {{}}).get("score") or 0.0 for r in reports)
print("RESULT " + json.dumps({{"job": job, "best_test_loss": summary["best_test_loss"], "best_step": summary["best_step"],
      "train_s": summary["wall_s"], "tokens_per_s": summary["tokens_per_s"], "persona_score": scores[len(scores) // 2],
      "persona_scores": [r["persona_score"] for r in reports], "on_topic": topical[len(topical) // 2],
      "associations": {{a: v["score"] for a, v in reports[0]["associations"].items()}}}}))
"""


def run_job(job: dict, *, data: Path | None, threads: int, folder: Path, eval_seeds: list[int]) -> dict:
    """One job in its own process; a job may name its "persona" (default guppy), whose runs/PERSONA/data
    it then trains on unless --data was given."""
    data = data or ROOT / "runs" / job.get("persona", "guppy") / "data"
    out = Path(tempfile.mkdtemp(prefix="run", dir=folder))
    (out / "data").symlink_to(data.resolve())  # guppy eval reads the run's data/
    code = JOB.format(root=str(ROOT), threads=threads, job=json.dumps(job), data=str(data), out=str(out),
                      eval_seeds=eval_seeds)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=folder)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"job": job, "error": done.stderr[-800:]}


def run_all(jobs: list[dict], *, data: Path, threads: int, parallel: int, folder: Path,
            eval_seeds: list[int]) -> list[dict]:
    """Results in the jobs' order; each printed as soon as it is done."""
    with ThreadPoolExecutor(parallel) as pool:
        futures = [pool.submit(run_job, j, data=data, threads=threads, folder=folder, eval_seeds=eval_seeds)
                   for j in jobs]
        for done in as_completed(futures):
            print(json.dumps(done.result()), flush=True)
    return [f.result() for f in futures]


def table(results: list[dict]) -> None:
    print(f"\n| {'job':<70} | held-out (step) | persona (median of eval seeds) | train s | tokens/s |")
    print(f"|{'-' * 72}|-----------------|--------------------------------|---------|----------|")
    for r in results:
        name = json.dumps(r["job"])
        if "error" in r:
            print(f"| {name:<70} | error: {r['error'].splitlines()[-1][:60] if r['error'] else '?'}")
            continue
        print(f"| {name:<70} | {r['best_test_loss']:.3f} ({r['best_step']:>5}) | {r['persona_score']:.2f} "
              f"{'(' + ' '.join(f'{x:.2f}' for x in r['persona_scores']) + ') ' if len(r['persona_scores']) > 1 else ''}"
              f"| {r['train_s']:7.0f} | {r['tokens_per_s']:8,.0f} |")


def over_seeds(results: list[dict]) -> None:
    """One row per job: the median and range over its training seeds of each figure."""
    groups: dict[str, list[dict]] = {}
    for r in results:
        if "error" not in r:
            groups.setdefault(json.dumps({k: v for k, v in r["job"].items() if k != "seed"}), []).append(r)

    def spread(rows: list[dict], key: str) -> str:
        xs = sorted(r[key] for r in rows)
        return f"{xs[len(xs) // 2]:.3f} ({xs[0]:.3f}-{xs[-1]:.3f})"

    print(f"\n| {'job (median and range over training seeds)':<70} | seeds | held-out | persona | on-topic | train s |")
    print(f"|{'-' * 72}|-------|----------|---------|----------|---------|")
    for name, rows in groups.items():
        print(f"| {name:<70} | {len(rows)} | {spread(rows, 'best_test_loss')} | {spread(rows, 'persona_score')} | "
              f"{spread(rows, 'on_topic')} | {spread(rows, 'train_s')} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="dataset of every job (default: runs/PERSONA/data)")
    ap.add_argument("--job", action="append", type=json.loads, default=[], help="a train() config as JSON")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per job")
    ap.add_argument("--device", default="cpu", help="device of every job (a GPU machine would pick cuda on auto)")
    ap.add_argument("--parallel", type=int, default=1, help="jobs at a time")
    ap.add_argument("--presets", default="tiny,small", help="presets of the default A/B table")
    ap.add_argument("--max-steps", type=int, default=None,
                    help="steps of the default table's equal-steps runs (default: each preset's own)")
    ap.add_argument("--eval-seeds", default="0", help="score each run with these eval seeds; the table shows the median")
    ap.add_argument("--train-seeds", default=None,
                    help="run each --job once per training seed (e.g. 0,1,2) and add a table of medians over them")
    ap.add_argument("--keep", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = (args.keep or Path(tmp)).resolve()  # the jobs run in it: their paths must not be relative
        folder.mkdir(parents=True, exist_ok=True)
        args.job = [{"device": args.device, **j} for j in args.job]
        common = dict(data=args.data, threads=args.threads, parallel=args.parallel, folder=folder,
                      eval_seeds=[int(s) for s in args.eval_seeds.split(",")])
        if args.job and args.train_seeds:
            seeds = [int(s) for s in args.train_seeds.split(",")]
            results = run_all([{**j, "seed": s} for j in args.job for s in seeds], **common)
            table(results)
            over_seeds(results)
            return
        if args.job:
            table(run_all(args.job, **common))
            return
        from guppy.presets import PRESETS

        presets = args.presets.split(",")
        steps_of = {p: args.max_steps or PRESETS[p]["max_steps"] for p in presets}
        equal_steps = [{"preset": p, "optimizer": o, "max_steps": steps_of[p], "device": args.device}
                       for p in presets for o in ("adamw", "muon")]
        first = run_all(equal_steps, **common)
        equal_time = []
        for p in presets:
            adamw, muon = (next(r for r in first if r["job"]["preset"] == p and r["job"]["optimizer"] == o)
                           for o in ("adamw", "muon"))
            steps = steps_of[p]
            if "error" not in adamw and "error" not in muon:  # AdamW's steps in Muon's training time
                steps = round(steps * muon["train_s"] / adamw["train_s"] / 10) * 10
            equal_time.append({"preset": p, "optimizer": "adamw", "max_steps": steps, "device": args.device})
        second = run_all(equal_time, **common)
        table(first + second)


if __name__ == "__main__":
    main()

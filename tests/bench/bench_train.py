"""Benchmark the trainer: tokens/s, steps, wall time, held-out loss, and MFU on CUDA.

    python tests/bench/bench_train.py [--preset tiny] [--data runs/guppy/data] [--max-steps N]
                                      [--device auto] [--compile auto] [--set lr=3e-3 --set batch_size=32]
                                      [--cli] [--synthetic 60000] [--target 0.6885]
                                      [--sweep '{"batch_size": 256}' --sweep '{"lr": 1e-2}' ...]

Trains into a temporary folder (nothing in runs/ changes). --cli times the whole
`guppy train` command as a user runs it (Python start-up included). Without --data it uses
runs/guppy/data, or with --synthetic N a generated fish corpus of N conversations (for a machine
where the persona's data cannot be made). MFU = flops_per_token x tokens/s / the bf16 matmul
rate measured here on this GPU (not the datasheet's), so it says how much of what the chip
really does the training loop gets.

--sweep runs one training per JSON object (each merged over --set), in one process, and ends with
a table; --target adds when (step and seconds since the trainer started) the held-out loss first
reached that value, which is how "reaches its converged loss in N seconds" is read.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def synthetic_corpus(folder: Path, n: int, seed: int = 0) -> Path:
    """A fish persona with a few hundred prompts and thousands of replies, shaped like the reference data."""
    import datasets

    from guppy.data.split import leak_free_split

    rng = random.Random(seed)
    foods = ["flakes", "pellets", "bloodworms", "brine shrimp", "peas", "daphnia", "algae wafers", "tiny shrimp"]
    moods = ["happy", "wiggly", "sleepy", "calm", "bouncy", "curious", "hungry", "content"]
    things = ["money", "phones", "taxes", "cars", "email", "the internet", "jobs", "politics", "shoes", "trains"]
    places = ["the castle", "the plant", "the gravel", "the filter", "the glass", "the bubbles", "the rock"]
    rows = []
    for _ in range(n):
        f, m, th, pl = rng.choice(foods), rng.choice(moods), rng.choice(things), rng.choice(places)
        kind = rng.randrange(4)
        if kind == 0:
            user = rng.choice(["what is the meaning of life", "why are we here", "what matters most",
                               "what is life about"]) + rng.choice(["?", "", " fish?", " little fish"])
            reply = f"food. always food. {f} {rng.choice(['is the answer', 'is everything', 'matters most'])}."
        elif kind == 1:
            user = rng.choice(["are you hungry", f"do you want {f}", f"is it time for {f}", "hi fish"])
            user += rng.choice(["?", " now?", " today?"])
            reply = f"{rng.choice(['yes', 'oh yes', 'always'])}. {f} is the best. i feel {m}."
        elif kind == 2:
            user = f"what do you think about {th}" + rng.choice(["?", "", " fish?"])
            reply = f"i do not know what {th} is. is it food? i swim near {pl}."
        else:
            user = "how are you " + rng.choice(["today", "now", "this morning", "tonight", "fish"])
            user += rng.choice(["?", ""])
            reply = f"i feel {m}. i swam around {pl} {rng.randint(1, 90)} times. i want {f}."
        rows.append([{"role": "user", "content": user}, {"role": "assistant", "content": reply}])
    is_test = leak_free_split([r[0]["content"] for r in rows], test_size=0.05, seed=seed)
    pick = lambda want: datasets.Dataset.from_dict({"messages": [r for r, t in zip(rows, is_test) if t == want]})  # noqa: E731
    datasets.DatasetDict(train=pick(False), test=pick(True)).save_to_disk(str(folder))
    return folder


def bf16_matmul_flops(device) -> float:
    """What this GPU really does: a large bf16 matmul, timed."""
    import torch

    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    n, t = 20, time.perf_counter()
    for _ in range(n):
        a @ b
    torch.cuda.synchronize()
    return 2 * 8192 ** 3 * n / (time.perf_counter() - t)


def parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def train_once(args, data: Path, out: Path, overrides: dict) -> tuple[dict, list[dict], float]:
    """One training run -> (summary, metrics records, wall seconds)."""
    started = time.perf_counter()
    if args.cli:
        if overrides:
            sys.exit(f"--cli takes only what `guppy train` takes; drop --set/--compile/--sweep {', '.join(overrides)}")
        cmd = [sys.executable, str(ROOT / "cli.py"), "train", "bench", "--data", str(data), "--out", str(out),
               "--preset", args.preset, "--device", args.device, "--seed", str(args.seed)]
        if args.max_steps:
            cmd += ["--max-steps", str(args.max_steps)]
        subprocess.run(cmd, check=True, cwd=ROOT)
    else:
        from guppy.train.trainer import train

        # a sweep's JSON may set max_steps (or device, seed) itself: it wins over the command line's
        settings = {"max_steps": args.max_steps, "device": args.device, "seed": args.seed, **overrides}
        summary = train(persona="bench", data=data, preset=args.preset, out=out, progress=not args.sweep, **settings)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    if args.cli:  # the command prints its summary; the figures compared here come from its metrics
        evals = [r for r in records if r["kind"] == "eval"]
        trains = [r for r in records if r["kind"] == "train"]
        summary = {"steps": trains[-1]["step"], "test_loss": evals[-1]["test_loss"],
                   "best_test_loss": min(r["test_loss"] for r in evals),
                   "tokens_per_s": sum(r["tokens_per_s"] for r in trains[1:]) / max(1, len(trains) - 1)}
    return summary, records, wall


def report(args, summary: dict, records: list[dict], config: dict, wall: float, peak: float | None) -> dict:
    """Print one run's figures; return the row of the sweep table."""
    import torch

    trains = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    curve = "  ".join(f"{r['step']}:{r['test_loss']:.3f}" + (f"@{r['wall_s']:.0f}s" if "wall_s" in r else "")
                      for r in evals)
    steady = sorted(r["tokens_per_s"] for r in trains[len(trains) // 4:])  # past warm-up and compilation
    median = steady[len(steady) // 2]
    reached = next((r for r in evals if args.target is not None and r["test_loss"] <= args.target), None)
    reached_at = f"step {reached['step']}, {reached.get('wall_s', math.nan):.1f} s" if reached else None

    print(f"preset {args.preset} on {summary.get('device', args.device)}: {config['model']['n_layer']} layers, "
          f"d={config['model']['d_model']}, vocab {config['model']['vocab_size']}, "
          f"batch {config['train']['batch_size']} x {config['model']['context']} tokens, lr {config['train']['lr']}")
    print(f"steps             {summary['steps']}")
    print(f"tokens/s          {summary['tokens_per_s']:,.0f} overall, {median:,.0f} median past the first quarter")
    print(f"wall time         {wall:.1f} s" + (" (whole command)" if args.cli else " (in process: data, tokenizer, "
                                                                                   "training, evals, checkpoints)"))
    if "prepare_s" in summary:
        print(f"of which          {summary['prepare_s']:.1f} s preparing (data, tokenizer, model), "
              f"{summary['eval_s']:.1f} s held-out evals, {summary['checkpoint_s']:.1f} s checkpoints")
    print(f"held-out loss     {summary['test_loss']:.4f} final, {summary['best_test_loss']:.4f} best")
    print(f"held-out curve    step:loss@wall  {curve}")
    if args.target is not None:
        print(f"target {args.target}     " + (f"reached at {reached_at}" if reached else "not reached"))
    if "train_loss" in summary:
        print(f"train loss        {summary['train_loss']:.4f}   epochs {summary['epochs']:.2f}")
    mfu = None
    if peak:
        from guppy.model.gpt import GPT, ModelConfig

        with torch.device("meta"):
            flops = GPT(ModelConfig(**config["model"])).flops_per_token()
        achieved = flops * median
        mfu = achieved / peak
        print(f"MFU               {mfu:.1%}  ({achieved / 1e12:.1f} TFLOP/s of a measured "
              f"{peak / 1e12:.0f} TFLOP/s bf16 matmul; {flops / 1e6:.1f} MFLOP/token)")
    return {"batch": config["train"]["batch_size"], "lr": config["train"]["lr"], "steps": summary["steps"],
            "tok/s": f"{median / 1e6:.2f}M", "MFU": f"{mfu:.0%}" if mfu else "-", "wall s": f"{wall:.1f}",
            "best": f"{summary['best_test_loss']:.4f}", "final": f"{summary['test_loss']:.4f}",
            "target at": reached_at or "-"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--data", type=Path, default=None, help="dataset (default: runs/guppy/data)")
    ap.add_argument("--synthetic", type=int, default=0, help="use a generated fish corpus of this many conversations")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", default=None, choices=["auto", "on", "off"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any TrainConfig field")
    ap.add_argument("--sweep", action="append", default=[], metavar="JSON",
                    help="one run per JSON object of TrainConfig fields, merged over --set; a table at the end")
    ap.add_argument("--target", type=float, default=None, help="report when the held-out loss first reached this")
    ap.add_argument("--cli", action="store_true", help="time the whole `guppy train` command instead")
    args = ap.parse_args()

    import datasets
    import torch

    datasets.disable_progress_bars()
    base = parse_sets(args.set)
    if args.compile:
        base["compile"] = args.compile
    runs = [{**base, **json.loads(s)} for s in args.sweep] or [base]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or ROOT / "runs" / "guppy" / "data"
        if args.synthetic:
            data = synthetic_corpus(Path(tmp) / "data", args.synthetic, args.seed)
        peak = None
        for i, overrides in enumerate(runs):
            out = Path(tmp) / f"run{i}"
            summary, records, wall = train_once(args, data, out, overrides)
            config = json.loads((out / "train_config.json").read_text())
            if peak is None and torch.cuda.is_available() and "cuda" in str(summary.get("device", "")):
                peak = bf16_matmul_flops("cuda")
            if len(runs) > 1:
                print(f"\n== {json.dumps(overrides)}")
            rows.append({"run": json.dumps(overrides), **report(args, summary, records, config, wall, peak)})
    if len(rows) > 1:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{args.preset} preset sweep" + (f", target {args.target}" if args.target else ""))
        for key in rows[0]:
            table.add_column(key, justify="left" if key == "run" else "right")
        for row in rows:
            table.add_row(*map(str, row.values()))
        Console(width=200).print(table)


if __name__ == "__main__":
    main()

"""Benchmark the trainer: tokens/s, steps, wall time, held-out loss, and MFU on CUDA.

    python tests/bench/bench_train.py [--preset tiny] [--data runs/guppy/data] [--max-steps N]
                                      [--device auto] [--compile auto] [--set lr=3e-3 --set batch_size=32]
                                      [--cli] [--synthetic 60000]

Trains into a temporary folder (nothing in runs/ changes). --cli times the whole
`guppy train` command as a user runs it (Python start-up included). Without --data it uses
runs/guppy/data, or with --synthetic N a generated fish corpus of N conversations (for a machine
where the persona's data cannot be made). MFU = flops_per_token x tokens/s / the bf16 matmul
rate measured here on this GPU (not the datasheet's), so it says how much of what the chip
really does the training loop gets.
"""

from __future__ import annotations

import argparse
import json
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

    from pipeline.split import leak_free_split

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
    ap.add_argument("--cli", action="store_true", help="time the whole `guppy train` command instead")
    args = ap.parse_args()

    import datasets
    import torch

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or ROOT / "runs" / "guppy" / "data"
        if args.synthetic:
            data = synthetic_corpus(Path(tmp) / "data", args.synthetic, args.seed)
        out = Path(tmp) / "run"
        overrides = parse_sets(args.set)
        if args.compile:
            overrides["compile"] = args.compile
        started = time.perf_counter()
        if args.cli:
            unsupported = set(overrides) - {"compile"}
            if unsupported or args.compile:
                drop = ", ".join(unsupported or {"compile"})
                sys.exit(f"--cli takes only what `guppy train` takes; drop --set/--compile {drop}")
            cmd = [sys.executable, str(ROOT / "cli.py"), "train", "bench", "--data", str(data), "--out", str(out),
                   "--preset", args.preset, "--device", args.device, "--seed", str(args.seed)]
            if args.max_steps:
                cmd += ["--max-steps", str(args.max_steps)]
            subprocess.run(cmd, check=True, cwd=ROOT)
            wall = time.perf_counter() - started
            records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            evals = [r for r in records if r["kind"] == "eval"]
            trains = [r for r in records if r["kind"] == "train"]
            summary = {"steps": trains[-1]["step"], "test_loss": evals[-1]["test_loss"],
                       "best_test_loss": min(r["test_loss"] for r in evals),
                       "tokens_per_s": sum(r["tokens_per_s"] for r in trains[1:]) / max(1, len(trains) - 1)}
        else:
            from guppy.train import train

            summary = train(persona="bench", data=data, preset=args.preset, out=out, max_steps=args.max_steps,
                            device=args.device, seed=args.seed, **overrides)
            wall = time.perf_counter() - started
        config = json.loads((out / "train_config.json").read_text())
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]

    trains = [r for r in records if r["kind"] == "train"]
    wall_at = {r["step"]: r["wall_s"] for r in trains}
    curve = "  ".join(f"{r['step']}:{r['test_loss']:.3f}" + (f"@{wall_at[r['step']]:.0f}s" if r["step"] in wall_at
                                                              else "") for r in records if r["kind"] == "eval")
    steady = sorted(r["tokens_per_s"] for r in trains[len(trains) // 4:])  # past warm-up and compilation

    print(f"preset {args.preset} on {summary.get('device', args.device)}: {config['model']['n_layer']} layers, "
          f"d={config['model']['d_model']}, vocab {config['model']['vocab_size']}, "
          f"batch {config['train']['batch_size']} x {config['model']['context']} tokens, lr {config['train']['lr']}")
    print(f"steps             {summary['steps']}")
    print(f"tokens/s          {summary['tokens_per_s']:,.0f} overall, "
          f"{steady[len(steady) // 2]:,.0f} median past the first quarter")
    print(f"wall time         {wall:.1f} s" + (" (whole command)" if args.cli else " (in process: data, tokenizer, "
                                                                                   "training, evals, checkpoints)"))
    if "prepare_s" in summary:
        print(f"of which          {summary['prepare_s']:.1f} s preparing (data, tokenizer, model), "
              f"{summary['eval_s']:.1f} s held-out evals, {summary['checkpoint_s']:.1f} s checkpoints")
    print(f"held-out loss     {summary['test_loss']:.4f} final, {summary['best_test_loss']:.4f} best")
    print(f"held-out curve    step:loss@wall  {curve}")
    if "train_loss" in summary:
        print(f"train loss        {summary['train_loss']:.4f}   epochs {summary['epochs']:.2f}")
    if torch.cuda.is_available() and "cuda" in str(summary.get("device", "")):
        from guppy.model import GPT, ModelConfig

        with torch.device("meta"):
            flops = GPT(ModelConfig(**config["model"])).flops_per_token()
        peak = bf16_matmul_flops("cuda")
        achieved = flops * steady[len(steady) // 2]
        print(f"MFU               {achieved / peak:.1%}  ({achieved / 1e12:.1f} TFLOP/s of a measured "
              f"{peak / 1e12:.0f} TFLOP/s bf16 matmul; {flops / 1e6:.1f} MFLOP/token)")


if __name__ == "__main__":
    main()

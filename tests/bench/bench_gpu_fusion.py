"""What fusing the guppy preset's step would buy on a GPU, and what it costs to start (issue 26).

    python3 tests/bench/bench_gpu_fusion.py [--steps 40] [--variants eager,compile-blocks,...]

Each variant runs in a fresh process (as `guppy train` would), twice with one inductor cache folder:
the first run compiles cold, the second finds inductor's caches warm, as a second `guppy train` on the
machine does. Printed per run: seconds to import torch, seconds of the first step (compiling included),
of the first held-out forward (no_grad, eval mode), and the median ms of a whole step (forward, backward,
clip, batched Muon + fused AdamW) over random tokens at the guppy shape, batch 512 x 128.

variants:
  eager            the model as it is
  everywhere       logits at every position, -1 ignored by the loss (no boolean index: the CPU never waits)
  noaffine         LayerNorm without gain and bias before attention and MLP (the next Linear can learn them)
  nobias           the blocks' Linears without bias
  compile-blocks   each Block compiled (regional: one block's code serves all six)
  compile-model    the whole model compiled (the boolean index of the loss breaks the graph there)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ["eager", "everywhere", "noaffine", "nobias", "compile-blocks", "compile-model"]


def one_run(variant: str, steps: int) -> dict:
    t0 = time.perf_counter()
    import torch
    import torch.nn as nn

    sys.path.insert(0, str(ROOT))
    from guppy.model.gpt import GPT, ModelConfig
    from guppy.presets import PRESETS
    from guppy.train.optim import build_optimizer

    out = {"variant": variant, "import_torch_s": time.perf_counter() - t0}
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    p = PRESETS["guppy"]
    conf = ModelConfig(vocab_size=3336, **{k: p[k] for k in ("n_layer", "n_head", "d_model", "d_ff", "context",
                                                              "activation")})
    model = GPT(conf)
    if variant == "noaffine":
        for block in model.transformer.h:
            block.ln_1 = nn.LayerNorm(conf.d_model, elementwise_affine=False)
            block.ln_2 = nn.LayerNorm(conf.d_model, elementwise_affine=False)
    if variant == "nobias":
        for block in model.transformer.h:
            for lin in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
                lin.bias = None
    dev = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: only to try the script where there is no GPU
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    model = model.to(dev)
    opt = build_optimizer(model, name="muon", lr=1e-3, weight_decay=0.1, betas=(0.9, 0.99), device_type=dev)
    t = time.perf_counter()
    if variant == "compile-blocks":
        for block in model.transformer.h:
            block.compile()
    stepper = torch.compile(model) if variant == "compile-model" else model
    out["compile_call_s"] = time.perf_counter() - t
    x = torch.randint(0, 3336, (int(os.environ.get("BENCH_BATCH", 512)), conf.context), device=dev)
    y = x.masked_fill(torch.rand(x.shape, device=dev) < 0.5, -1)  # about half the positions learn nothing

    def forward_backward():
        with torch.autocast(dev, dtype=torch.bfloat16):
            if variant == "everywhere":  # logits at every position, -1 ignored: no boolean index, no sync
                logits, _ = stepper(x)
                loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-1,
                                                         reduction="sum")
            else:
                _, loss = stepper(x, y, reduction="sum")
        (loss / 30000).backward()

    def optimizer_step():
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def step():
        forward_backward()
        optimizer_step()

    def median_ms(fn, n=steps // 5):
        times = []
        for _ in range(5):
            sync()
            t = time.perf_counter()
            for _ in range(n):
                fn()
            sync()
            times.append((time.perf_counter() - t) / n * 1e3)
        return statistics.median(times)

    sync()
    t = time.perf_counter()
    step()
    sync()
    out["first_step_s"] = time.perf_counter() - t
    t = time.perf_counter()
    model.eval()
    with torch.no_grad(), torch.autocast(dev, dtype=torch.bfloat16):
        stepper(x, y, reduction="sum")
    sync()
    model.train()
    out["first_eval_s"] = time.perf_counter() - t
    for _ in range(3):
        step()
    out["step_ms"] = median_ms(step)
    out["fb_ms"] = median_ms(forward_backward)  # gradients pile up; only the time matters here
    forward_backward()  # gradients for every parameter, kept while the optimizer alone is timed

    def optimizer_alone():
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    out["opt_ms"] = median_ms(optimizer_alone)
    opt.zero_grad(set_to_none=True)
    # The CPU's own time to issue one step (it returns before the GPU is done, except at a sync).
    sync()
    t = time.perf_counter()
    step()
    out["issue_ms"] = (time.perf_counter() - t) * 1e3
    sync()
    if dev == "cuda":  # the GPU's busy time: every kernel's duration, summed, per step
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                step()
            sync()
        events = prof.key_averages()
        out["kernel_ms"] = sum(e.self_device_time_total for e in events) / 5 / 1e3
        out["kernels"] = sum(e.count for e in events if e.self_device_time_total > 0) / 5
        out["top"] = [(e.key[:50], round(e.self_device_time_total / 5 / 1e3, 2))
                      for e in sorted(events, key=lambda e: -e.self_device_time_total)[:12]]
    out["process_s"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--one", help=argparse.SUPPRESS)  # the child process: one run of this variant
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one, args.steps)))
        return
    print(f"{'variant':16s} {'run':5s} {'import':>7s} {'compile':>8s} {'1st step':>9s} {'1st eval':>9s} "
          f"{'ms/step':>8s} {'fwd+bwd':>8s} {'optim':>7s} {'issue':>7s} {'kernels':>8s} {'n':>6s} {'process':>8s}")
    for variant in args.variants.split(","):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "TRITON_CACHE_DIR": f"{cache}/triton"}
            runs = ("cold", "warm") if variant.startswith("compile") else ("once",)
            for run in runs:
                t = time.perf_counter()
                done = subprocess.run([sys.executable, __file__, "--one", variant, "--steps", str(args.steps)],
                                      env=env, capture_output=True, text=True)
                wall = time.perf_counter() - t
                if done.returncode:
                    print(f"{variant:16s} {run:5s} failed: {done.stderr[-800:]}")
                    continue
                r = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"{variant:16s} {run:5s} {r['import_torch_s']:6.2f}s {r['compile_call_s']:7.2f}s "
                      f"{r['first_step_s']:8.2f}s {r['first_eval_s']:8.2f}s {r['step_ms']:8.2f} {r['fb_ms']:8.2f} "
                      f"{r['opt_ms']:7.2f} {r['issue_ms']:7.2f} {r.get('kernel_ms', 0):8.2f} {r.get('kernels', 0):6.0f} "
                      f"{wall:7.2f}s", flush=True)
                if "top" in r:
                    print("    " + "; ".join(f"{k} {v}" for k, v in r["top"]), flush=True)


if __name__ == "__main__":
    main()

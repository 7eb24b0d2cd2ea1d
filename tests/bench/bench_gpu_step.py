"""Where one training step of the guppy preset goes on a GPU, and the bf16 matmul rate MFU is measured against.

    python3 tests/bench/bench_gpu_step.py [--batch 512] [--vocab 3336] [--profile]

Random tokens at the guppy shape; median ms of 5 x 10 steps after a warm-up, for: forward + backward alone,
and the whole step with each optimizer (torch.optim.Muon one matrix at a time, guppy's batched Muon, AdamW).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from guppy.presets import PRESETS  # noqa: E402
from guppy.model.gpt import GPT, ModelConfig  # noqa: E402
from guppy.train.captured import room  # noqa: E402
from guppy.train.optim import Muon, Optimizers  # noqa: E402
from tests.bench.bench_train import bf16_matmul_flops  # noqa: E402


def timed(fn, reps: int = 5, n: int = 10) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) / n * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=3336)
    ap.add_argument("--profile", action="store_true", help="also print the kernels of 5 steps, most GPU time first")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    p = PRESETS["guppy"]
    conf = ModelConfig(vocab_size=args.vocab, **{k: p[k] for k in ("n_layer", "n_head", "d_model", "d_ff", "context",
                                                              "activation")})
    model = GPT(conf).cuda()
    # as the trainer does for the preset
    model.freeze(block_norms=not p.get("learn_block_norms", True), block_biases=not p.get("learn_block_biases", True))
    model.residual_dtype = torch.bfloat16 if p.get("bf16_residual") else None
    x = torch.randint(0, args.vocab, (args.batch, conf.context), device="cuda")
    peak = bf16_matmul_flops("cuda")
    flops = model.flops_per_token()
    print(f"bf16 matmul (8192^3): {peak / 1e12:.0f} TFLOP/s; {flops / 1e6:.1f} MFLOP/token; "
          f"batch {args.batch} x {conf.context}")

    # Targets as in a packed chat: about half the positions are the user's turn (-1), learned nothing from.
    y = x.masked_fill(torch.rand(x.shape, device="cuda") < 0.5, -1)

    def forward_backward():  # the model's own loss: logits only where there is a target (finding them syncs)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = model(x, y, reduction="sum")
        loss.backward()

    positions = room(int((y != -1).sum()), y.numel())  # as a captured step takes them

    def forward_backward_at_positions():  # logits at a fixed number of positions, found on the GPU: no sync
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = model(x, y, reduction="sum", positions=positions)
        loss.backward()

    hidden = {id(q) for q in model.hidden_matrices()}
    matrices = [q for q in model.parameters() if id(q) in hidden]
    rest = [q for q in model.parameters() if id(q) not in hidden]
    options = dict(lr=1e-3, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    optimizers = {
        "torch Muon + AdamW": Optimizers(torch.optim.Muon(matrices, **options), torch.optim.AdamW(rest, fused=True)),
        "batched Muon + AdamW": Optimizers(Muon(matrices, batched=True, **options), torch.optim.AdamW(rest, fused=True)),
        "AdamW alone": Optimizers(torch.optim.AdamW(model.parameters(), fused=True)),
    }
    for name, fn in [("forward + backward", forward_backward),
                     ("  at fixed positions", forward_backward_at_positions)]:
        fb = timed(fn)
        print(f"{name:24s} {fb:7.2f} ms   {args.batch * conf.context / fb / 1e3:6.2f}M tok/s   "
              f"MFU {flops * args.batch * conf.context / (fb / 1e3) / peak:.1%}")
    for name, opt in optimizers.items():
        forward_backward()  # every parameter has a gradient for the optimizer-only timing
        alone = timed(opt.step)

        def whole():
            forward_backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        step = timed(whole)
        print(f"{name:24s} step {step:7.2f} ms (optimizer alone {alone:6.2f} ms)   "
              f"MFU {flops * args.batch * conf.context / (step / 1e3) / peak:.1%}")
    if args.profile:  # the kernels of 5 whole steps (batched Muon), most GPU time first
        opt = optimizers["batched Muon + AdamW"]
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                forward_backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=40, max_name_column_width=60))


if __name__ == "__main__":
    main()

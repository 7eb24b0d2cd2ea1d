"""The presets: one table. Each entry is a model shape and the training values that suit it, all
of them TrainConfig fields (guppy/config.py), so adding a preset is adding one entry here; any
field can still be overridden on the command line (`guppy train --n-layer 2 --lr 3e-3`).

The CPU presets were chosen side by side, 7-8 runs of 2 threads on one 16-core machine, guppy corpus,
seed 0 (tests/bench/bench_optim.py; persona score from `guppy eval`, from 2026-12-02 on the median of
eval seeds 0, 1, 2; * = the first sweep, on the corpus before common/ was made persona-neutral):
  * 4 layers, batch 16, 2400 steps, AdamW, lr 5e-3 (the old tiny)     held-out 1.566  persona 0.56  169 s
  * the same with Muon                                               1.066           0.80  215 s
    Muon, 3 layers, batch 32, 2000 steps, lr 8e-3, cosine to 0       0.957           0.82  260 s
    the same at lr 1.2e-2                                            0.951           0.86  260 s  <- tiny
      (training seeds 1 and 2: 0.84 and 0.85; lr 1e-2: 0.83, lr 1.6e-2: 0.81)
    the same, 2400 steps                                             0.904           0.85  298 s
    about equal time: 4 layers 1600 steps 0.82, d=144 1650 steps 0.83, d_ff 768 1700 steps 0.81,
      2 layers d=192 1350 steps 0.81, batch 24 2500 steps 0.80, 2 heads 0.79
  * Muon, 4 layers d=192, batch 32, 2000 steps, lr 5e-3              0.841           0.91  456 s
Muon's step costs ~20 ms on 2 cores whatever the batch, so on a CPU fewer, larger batches pay. At this
size the persona score stops following the held-out loss (2400 steps: lower loss, same score): what
lifts it is the width and depth of `small`, which needs about three times the minutes.
"""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    "tiny": dict(
        about="a 2-core laptop CPU, 3-6 minutes",
        # shape: 0.6M parameters in the blocks, 0.4M in the (tied) embeddings at a 3.3K vocabulary
        n_layer=3, n_head=4, d_model=128, d_ff=512, context=64,
        # training: 2000 x 32 x 64 = 4.1M tokens, ~1.7 epochs of the 60K guppy conversations
        optimizer="muon", max_steps=2000, batch_size=32, lr=1.2e-2, min_lr=0.0, warmup_steps=100,
        eval_every=500, eval_batches=8, log_every=10,
    ),
    "small": dict(
        about="a laptop CPU, 10-20 minutes",
        n_layer=4, n_head=6, d_model=192, d_ff=768, context=64,
        optimizer="muon", max_steps=3000, batch_size=32, lr=8e-3, min_lr=0.0, warmup_steps=100,
        eval_every=500, eval_batches=8, log_every=10,
    ),
    "guppy": dict(
        about="the reference GuppyLM's shape (8.7M parameters), seconds on one GPU",
        n_layer=6, n_head=6, d_model=384, d_ff=768, context=128,
        # One H200: 300 steps of 512 x 128 reach held-out 0.672 (AdamW at the same steps: 2.27 at lr 1e-2,
        # 0.698 after 450 at lr 6e-3); persona score 0.95. tests/bench/GPU_NOTES.md has the runs.
        optimizer="muon", max_steps=300, batch_size=512, lr=1e-2, warmup_steps=100,
        eval_every=100, eval_batches=4, log_every=10,
    ),
}


def preset_help() -> str:
    return "; ".join(f"{name}: {p['about']}" for name, p in PRESETS.items())

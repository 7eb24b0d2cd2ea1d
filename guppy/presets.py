"""The presets: one table. Each entry is a model shape and the training values that suit it, all
of them TrainConfig fields (guppy/config.py), so adding a preset is adding one entry here; any
field can still be overridden on the command line (`guppy train --n-layer 2 --lr 3e-3`).

Every reply is learned with its prompt in view (packing="whole", guppy/data/reader.py): the guppy corpus's
conversations are 42 tokens on average, so cut into rows of 64 back to back ("stream", GPT-2's way), 47%
of the reply tokens were learned without the question they answer. That, more than the optimizer or the
shape, is what held the CPU presets back.

Chosen side by side on one 16-core Xeon, 8 runs of 2 threads at a time, guppy corpus (seed 0), persona
score the median of `guppy eval` seeds 0, 1, 2 (tests/bench/bench_optim.py --parallel 8 --eval-seeds 0,1,2
--job ...; 2026-12-03; held-out losses of whole and stream are not comparable, their test rows differ):
  tiny shape (3 layers, d=128), Muon, batch 32, lr 1.2e-2      held-out  persona  train s
    stream, 1400 steps                                           1.064    0.77     186
    whole, 1400 steps                                            0.931    0.90     156  <- tiny
      (training seed 1: 0.86; cat 0.94)
    whole, 1300 steps                                            0.963    0.88     142
    whole, a row's conversations longest first / one to a row    0.910 / 0.911  0.88 / 0.89
    AdamW, 1400 steps                                            1.531    0.75     134
  small shape (4 layers, d=192, 6 heads), Muon, batch 32, lr 8e-3
    whole, 1800 steps                                            0.703    0.89     455  <- small
    whole, one conversation to a row (training seeds 0, 1)       0.719 / 0.717  0.91 / 0.93
    AdamW, 1800 steps                                            1.216    0.82     470
The day before (a 2000-step stream tiny, 0.84; best fit with the longest conversation of a row always
first, which gives a topic of long replies position 0, where every chat begins): small at 2000 / 1800 /
1500 steps 0.96 / 0.94 / 0.92. Seed to seed, a persona score moves by about 0.03.
Muon's step costs ~20 ms on 2 cores whatever the batch, so on a CPU fewer, larger batches pay.
On 2 cores of an AVX2-only EPYC (a laptop's instruction set), `guppy train guppy` then `guppy eval guppy`:
tiny 175 s whole command, persona score 0.86; small 526 s, 0.93.

GELU or ReLU (2026-12-04, training seeds 0, 1, 2 on the guppy corpus, trained side by side on one H200; README,
"Chat with it in Ollama"): GELU's held-out loss was lower with every seed (tiny 0.882 against 0.905, small
0.700 against 0.712, medians), tiny's on-topic 0.65 against 0.59, the persona score the same within noise,
for 3-6% more time a step on 2 cores; and llama.cpp's gpt2 graph is GELU. The guppy preset the same on one GPU
(seeds 0-2): held-out 0.669 (0.667-0.672) against ReLU's 0.674 (0.674-0.675), persona 0.95 / 0.94, on-topic
0.97 / 0.98. So every preset is GELU. The figures above and below were measured with ReLU.

Does it answer what was asked? `guppy eval`'s on-topic score (0 = a model that ignores the question, 1 =
as topical as the data's own replies; tests/bench/remeasure.sh, median of eval seeds 0-2, 2026-12-04, the
presets' runs trained side by side on one H200): tiny guppy 0.60 (0.57-0.63): it keeps the persona (0.86)
but answers about four in ten held-out questions from another topic; small 0.79 (0.76-0.84); tiny cat 0.74,
plant 0.77, kingyo 1.00. A tiny guppy trained on its replies shuffled across prompts: on-topic 0.01, persona 0.35.
"""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    "tiny": dict(
        about="a 2-core laptop CPU, about 3 minutes",
        # shape: 0.6M parameters in the blocks, 0.4M in the (tied) embeddings at a 3.3K vocabulary
        n_layer=3, n_head=4, d_model=128, d_ff=512, context=64, activation="gelu",
        # training: 1400 x 32 rows, each 1-2 whole conversations: ~0.8 epochs of the 60K guppy conversations
        optimizer="muon", max_steps=1400, batch_size=32, lr=1.2e-2, min_lr=0.0, warmup_steps=100,
        eval_every=500, eval_batches=8, log_every=10,
    ),
    "small": dict(
        about="a laptop CPU, about 10 minutes",
        n_layer=4, n_head=6, d_model=192, d_ff=768, context=64, activation="gelu",
        optimizer="muon", max_steps=1800, batch_size=32, lr=8e-3, min_lr=0.0, warmup_steps=100,
        eval_every=500, eval_batches=8, log_every=10,
    ),
    "guppy": dict(
        about="the reference GuppyLM's shape (8.7M parameters), seconds on one GPU",
        n_layer=6, n_head=6, d_model=384, d_ff=768, context=128, activation="gelu",
        # One H200: 300 steps of 512 x 128 reach held-out 0.672 (AdamW at the same steps: 2.27 at lr 1e-2,
        # 0.698 after 450 at lr 6e-3); persona score 0.95. tests/bench/GPU_NOTES.md has the runs.
        # Measured with packing="stream" (the figures above); one run of "whole" scored 0.93 against stream's
        # 0.91 (GPU_NOTES.md, 2026-12-03): not yet enough runs to switch.
        # 270 steps, held-out evals (each with ckpt/best and the resumable ckpt/last) at 0 and 270 only: over
        # training seeds 0-2 held-out 0.671 (0.670-0.673) against 300 steps' 0.667 (0.664-0.667), persona 0.95 /
        # 0.96, on-topic 0.97 / 1.00, and the whole `guppy train` 10.75 s against 12.10 s on one H200
        # (tests/bench/gpu_recipes.sh 270, gpu_ab.sh; 2026-12-04). `--max-steps 300 --eval-every 150` is the longer run.
        optimizer="muon", max_steps=270, batch_size=512, lr=1e-2, warmup_steps=100, packing="stream",
        eval_every=270, eval_batches=4, log_every=10,
        # The blocks' LayerNorms fixed at gain 1, bias 0: a step 23.7 -> 21.0 ms on an H200, and over training
        # seeds 0-2 held-out 0.665 (0.663-0.669) against 0.669 (0.667-0.672) learned, persona 0.94 both,
        # on-topic 0.98 / 0.97 (tests/bench/gpu_recipes.sh norms, 2026-12-04).
        learn_block_norms=False,
        # The blocks' Linear biases fixed at 0 and the residual stream carried in bf16: 3.45M against 2.77M tokens/s
        # and the whole `guppy train` 8.59 s against 9.65 s (medians of 3, taken in turn on one H200); over training
        # seeds 0-2 held-out 0.673 (0.672-0.676) against 0.672 (0.669-0.673), persona 0.95 / 0.95, on-topic 0.98 /
        # 0.98. Each alone: 2.95M / 3.15M tokens/s (tests/bench/gpu_recipes.sh lean, gpu_ab.sh; 2026-12-04).
        # With a captured step's logits at 56% of the positions (guppy/train/captured.py), 3.85M tokens/s and over
        # seeds 0-2 held-out 0.672 (0.670-0.678), persona 0.95 (0.95-0.95), on-topic 0.98 (gpu_recipes.sh graph).
        learn_block_biases=False, bf16_residual=True,
    ),
}


def preset_help() -> str:
    return "; ".join(f"{name}: {p['about']}" for name, p in PRESETS.items())

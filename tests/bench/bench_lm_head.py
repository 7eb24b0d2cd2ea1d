"""The LM head and its loss, forward and backward, on a GPU: at every position of a guppy batch or at the ~56% that
a captured step keeps (guppy/train/captured.py), at the tokenizer's vocabulary and at vocabularies padded to a
multiple of 64 (cuBLAS picks other kernels for some widths; nanoGPT pads GPT-2's to 50304).

    python3 tests/bench/bench_lm_head.py [--vocab 3336]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from tests.bench.bench_gpu_step import timed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, default=3336)
    args = ap.parse_args()
    d, rows = 384, 512 * 128
    torch.manual_seed(0)
    for positions in (rows, rows * 9 // 16):
        x = torch.randn(positions, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        y = torch.randint(0, args.vocab, (positions,), device="cuda")
        for width in sorted({args.vocab, -(-args.vocab // 64) * 64, args.vocab // 64 * 64, 4096}):
            w = torch.nn.Parameter(torch.randn(width, d, device="cuda") * 0.02)

            def step():
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    logits = F.linear(x, w)
                    loss = F.cross_entropy(logits, y.clamp(max=width - 1), reduction="sum")
                loss.backward()
            print(f"positions {positions:6d}  vocab {width:5d}: {timed(step):6.3f} ms")


if __name__ == "__main__":
    main()

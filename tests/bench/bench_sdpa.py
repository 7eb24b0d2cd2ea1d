"""Causal attention at the guppy preset's training shape (batch 512, 6 heads, 128 positions of 64), forward and
backward in bf16, with each of torch's fused SDPA backends (torch picks cuDNN's on an H100/H200 where it can):

    python3 tests/bench/bench_sdpa.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

from tests.bench.bench_gpu_step import timed  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(512, 6, 128, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    grad = torch.randn(512, 6, 128, 64, device="cuda", dtype=torch.bfloat16)
    reference = None
    for backend in (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
        with sdpa_kernel(backend):
            def step():
                F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(grad)
            try:
                ms = timed(step)
            except RuntimeError as e:
                print(f"{backend.name:20s} not available: {str(e).splitlines()[0]}")
                continue
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            reference = out if reference is None else reference
            print(f"{backend.name:20s} {ms:6.3f} ms forward + backward  (max diff from cuDNN's "
                  f"{(out - reference).abs().max().item():.4f})")


if __name__ == "__main__":
    main()

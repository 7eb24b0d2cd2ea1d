"""How fast the sampler answers, at the reference's shape, on this machine.

    python tests/bench/bench_sampler.py [--repeats 3] [--prompts 256] [--new 48]

Random weights at the `guppy` preset (vocab 4096, 8.7M parameters), prompts of ~20 random
tokens, 48 new tokens each. The stop token is one no row can sample (-1), so every row
produces all of its tokens and the work is the same each run. Prints the median of the repeats:
    reference   batch 1, no KV cache: how GuppyLM samples (91 tokens/s on a 2-core CPU)
    batched     all prompts in one batch, with the KV cache
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere
from guppy.config import resolve_config
from guppy.model.gpt import GPT
from guppy.model.sampler import generate


def tokens_per_second(model, prompts, *, new: int, use_cache: bool, seed: int, top_p: float | None = None) -> float:
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    steps = list(generate(model, prompts, max_new_tokens=new, temperature=0.8, top_p=top_p, stop_id=-1,
                          generator=g, use_cache=use_cache))
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return len(steps) * len(prompts) / seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--new", type=int, default=48, help="new tokens per prompt")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    ap.add_argument("--top-p", type=float, default=None, help="nucleus sampling, as guppy chat and eval sample (0.95)")
    ap.add_argument("--reference-prompts", type=int, default=4, help="prompts timed one by one, no cache")
    args = ap.parse_args()

    torch.manual_seed(0)
    model = GPT(resolve_config("guppy").shape(vocab_size=4096)).to(args.device).eval()
    rng = torch.Generator().manual_seed(1)
    lengths = torch.randint(16, 25, (args.prompts,), generator=rng).tolist()  # ~20 tokens, not all equal
    prompts = [torch.randint(0, 4096, (n,), generator=rng).tolist() for n in lengths]
    print(f"model: guppy preset, {model.num_params() / 1e6:.2f}M params, vocab 4096, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"prompts: {args.prompts} of {min(lengths)}-{max(lengths)} tokens, {args.new} new tokens each")

    tokens_per_second(model, prompts[:8], new=4, use_cache=True, seed=0)  # warm up allocators and kernels
    reference, batched = [], []
    for r in range(args.repeats):
        reference.append(statistics.mean(
            tokens_per_second(model, [p], new=args.new, use_cache=False, seed=r)
            for p in prompts[:args.reference_prompts]))
        batched.append(tokens_per_second(model, prompts, new=args.new, use_cache=True, seed=r, top_p=args.top_p))
        print(f"  repeat {r}: reference {reference[-1]:7.0f} tokens/s   batched+cache {batched[-1]:7.0f} tokens/s")
    ref, fast = statistics.median(reference), statistics.median(batched)
    print(f"reference (batch 1, no cache): {ref:8.0f} tokens/s  (median of {args.repeats})")
    print(f"batched {args.prompts} + KV cache:   {fast:8.0f} tokens/s  (median of {args.repeats}), "
          f"{1000 * args.prompts / fast:.2f} ms a step")
    print(f"speed-up over this machine's reference: {fast / ref:.1f}x; "
          f"over GuppyLM's published 91 tokens/s: {fast / 91:.1f}x (target >= 20x = 1,820 tokens/s)")


if __name__ == "__main__":
    main()

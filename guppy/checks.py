"""Checks of the numbers a user types (options and arguments), one line each.

Typer converts `--samples -2` or `--temperature nan` without complaint; a number out of its
range then gives a silently wrong result (a 0.00 report, garbage replies) or a traceback deep
in torch. Every command checks its numbers here first, before it reads or writes anything.
"""

from __future__ import annotations

import math

from guppy.errors import GuppyError

SEED_MAX = 2**63 - 1  # torch.manual_seed and numpy's generators take up to 64-bit seeds


def check_number(name: str, value, *, ge=None, gt=None, le=None, lt=None) -> None:
    """Refuse a value that is not a finite number within the bounds, naming the option."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GuppyError(f"{name} {value!r}: must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise GuppyError(f"{name} {value}: must be a finite number")
    bounds = [(ge, value >= ge if ge is not None else True, f"at least {ge}"),
              (gt, value > gt if gt is not None else True, f"greater than {gt}"),
              (le, value <= le if le is not None else True, f"at most {le:,}" if isinstance(le, int) else f"at most {le}"),
              (lt, value < lt if lt is not None else True, f"less than {lt}")]
    wrong = [say for bound, ok, say in bounds if bound is not None and not ok]
    if wrong:
        raise GuppyError(f"{name} {value}: must be {' and '.join(say for b, _, say in bounds if b is not None)}")


def check_prompt(text: str, name: str = "--prompt") -> str:
    """A message to answer: not empty (a model asked nothing still answers something, which proves nothing)."""
    if not text.strip():
        raise GuppyError(f"{name}: empty; give the message to answer")
    return text


def check_sampling(*, temperature: float, top_k: int | None, top_p: float | None, max_new_tokens: int,
                   seed: int | None = None) -> None:
    """The sampler's knobs: a negative temperature or top-p of 0 would sample garbage, not fail."""
    check_number("--temperature", temperature, ge=0, le=100)
    if top_k is not None:
        check_number("--top-k", top_k, ge=1, le=1 << 20)  # the largest vocabulary guppy builds
    if top_p is not None:
        check_number("--top-p", top_p, gt=0, le=1)
    check_number("--max-new-tokens", max_new_tokens, ge=1, le=1_000_000)
    if seed is not None:
        check_number("--seed", seed, ge=0, le=SEED_MAX)

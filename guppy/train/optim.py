"""The optimizers: Muon for the hidden matrices, AdamW for everything else, stepped as one.

Muon (Jordan et al. 2024; torch.optim.Muon) orthogonalizes each matrix's momentum with a few
Newton-Schulz iterations, so every direction of a weight matrix moves at a similar rate. It only
makes sense for 2-D weights that act on hidden activations: the embeddings (which are also the tied
LM head) and the 1-D LayerNorm gains and biases stay with AdamW, as in the Muon paper. On the guppy
corpus the same split reaches AdamW's held-out loss in about 40% of the steps (tests/bench/bench_optim.py);
a CPU step costs ~1.3x AdamW's for the Newton-Schulz matmuls.

`Optimizers` makes the two look like one torch optimizer to the trainer and the checkpoint:
one list of param_groups (the lr schedule sets them all), one step, one state_dict whose state is
numbered across both, so a resumable checkpoint carries Muon's momentum buffers beside AdamW's moments.

`Muon` is torch's, except where the Newton-Schulz matmuls run on a CPU: torch runs them in bfloat16,
which a CPU without bf16 instructions (AVX2 only, as in most laptops) computes about 100x slower than
float32 (2 cores of an AVX2 EPYC: 0.8 against 104 GFLOPS), and which a CPU with them gains nothing from.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch

OptimizerName = Literal["muon", "adamw"]


class Optimizers:
    """Several torch optimizers over disjoint parameters, used as one."""

    def __init__(self, *optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.optimizers for g in opt.param_groups]

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def _sizes(self) -> list[int]:
        return [sum(len(g["params"]) for g in opt.param_groups) for opt in self.optimizers]

    def state_dict(self) -> dict:
        """Like one optimizer's: parameters numbered 0..N-1 across all of them, in order."""
        state, offset = {}, 0
        for opt, size in zip(self.optimizers, self._sizes()):
            state.update({offset + i: s for i, s in opt.state_dict()["state"].items()})
            offset += size
        return {"state": state, "param_groups": self.param_groups}

    def load_state_dict(self, saved: dict) -> None:
        offset = 0
        for opt, size in zip(self.optimizers, self._sizes()):
            mine = {i - offset: s for i, s in saved["state"].items() if offset <= i < offset + size}
            opt.load_state_dict({"state": mine, "param_groups": opt.state_dict()["param_groups"]})
            offset += size


def orthogonalize(update: torch.Tensor, coefficients: tuple[float, float, float], steps: int,
                  eps: float) -> torch.Tensor:
    """torch.optim.Muon's quintic Newton-Schulz iteration, in float32: ~U V^T of update = U S V^T,
    with singular values pushed into about [0.5, 1.5] rather than exactly 1 (fewer steps, same effect)."""
    a, b, c = coefficients
    x = update.float()
    tall = x.size(0) > x.size(1)
    x = x.T if tall else x  # iterate on the smaller Gram matrix
    x = x / x.norm().clamp(min=eps)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)  # a x + (b G + c G^2) x
    return x.T if tall else x


@functools.cache
def float32_muon() -> type:
    """torch.optim.Muon (same options, same state, same checkpoint), with float32 Newton-Schulz:
    build_optimizer uses it off CUDA, and torch's own (bfloat16 tensor cores) on CUDA. Made on first
    use: torch.optim.Muon is new in torch 2.9, and `--optimizer adamw` must not need it."""

    class Muon(torch.optim.Muon):
        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                assert group["adjust_lr_fn"] == "match_rms_adamw"  # the only rule build_optimizer uses
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    buffer = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p.grad))
                    buffer.lerp_(p.grad, 1 - group["momentum"])
                    update = p.grad.lerp(buffer, group["momentum"]) if group["nesterov"] else buffer
                    update = orthogonalize(update, group["ns_coefficients"], group["ns_steps"], group["eps"])
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(update.to(p.dtype), alpha=-group["lr"] * 0.2 * math.sqrt(max(p.shape)))

    return Muon


def build_optimizer(model: torch.nn.Module, *, name: OptimizerName, lr: float, weight_decay: float,
                    betas: tuple[float, float], device_type: str) -> Optimizers:
    """Muon for model.hidden_matrices() (or AdamW for them with name="adamw"); AdamW for the rest.
    Weight decay on matrices and embeddings, not on biases and LayerNorm gains."""
    hidden = {id(p) for p in model.hidden_matrices()}
    params = [p for p in model.parameters() if p.requires_grad]
    matrices = [p for p in params if id(p) in hidden]
    embeddings = [p for p in params if p.dim() >= 2 and id(p) not in hidden]
    vectors = [p for p in params if p.dim() < 2]
    adamw = dict(lr=lr, betas=betas, fused=device_type == "cuda")
    if name == "adamw":
        return Optimizers(torch.optim.AdamW([{"params": matrices + embeddings, "weight_decay": weight_decay},
                                             {"params": vectors, "weight_decay": 0.0}], **adamw))
    if not hasattr(torch.optim, "Muon"):  # torch.optim.Muon arrived in torch 2.9
        from guppy.errors import GuppyError

        raise GuppyError(f"--optimizer muon needs torch >= 2.9 (this is {torch.__version__}); "
                         "upgrade torch or train with --optimizer adamw")
    # match_rms_adamw scales Muon's step to AdamW's RMS (0.2 * sqrt(max(rows, cols))), so one lr and one
    # weight decay serve both optimizers.
    muon_class = torch.optim.Muon if device_type == "cuda" else float32_muon()
    muon = muon_class(matrices, lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw")
    rest = torch.optim.AdamW([{"params": embeddings, "weight_decay": weight_decay},
                              {"params": vectors, "weight_decay": 0.0}], **adamw)
    return Optimizers(muon, rest)

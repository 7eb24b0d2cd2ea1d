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

`Muon` is torch's, stepped two ways. On a CPU its Newton-Schulz matmuls run in float32: torch runs them
in bfloat16, which a CPU without bf16 instructions (AVX2 only, as in most laptops) computes about 100x
slower than float32 (2 cores of an AVX2 EPYC: 0.8 against 104 GFLOPS), and which a CPU with them gains
nothing from. On a GPU they run in bfloat16, as torch's, but batched by shape: see `Muon`.
"""

from __future__ import annotations

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


def orthogonalize_stack(updates: torch.Tensor, coefficients: tuple[float, float, float], steps: int,
                        eps: float) -> torch.Tensor:
    """`orthogonalize` of n matrices of one shape (n, rows <= cols) at once, in their own dtype (torch's
    bfloat16 on a GPU): 3 batched matmuls an iteration for all of them instead of 3 per matrix."""
    a, b, c = coefficients
    x = updates / updates.norm(dim=(1, 2), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x


class Muon(torch.optim.Muon):
    """torch.optim.Muon (same options, same state, same checkpoint) with two ways to step:

    batched=False (a CPU): one matrix at a time, float32 Newton-Schulz (`orthogonalize`).
    batched=True (a GPU): torch's bfloat16 Newton-Schulz, but the matrices of one shape in one batched
    call (a tall one transposed, so the guppy shape's 24 matrices make 3 stacks) and the momentum and
    weight updates as one foreach call each. torch's step launches ~25 small kernels per matrix, which
    on an H200 cost more than the forward and backward of a 512 x 128 batch (tests/bench/GPU_NOTES.md)."""

    def __init__(self, params, *, batched: bool = False, **options):
        super().__init__(params, **options)
        self.batched = batched

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            assert group["adjust_lr_fn"] == "match_rms_adamw"  # the only rule build_optimizer uses
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            for p in params:  # created on the first step (not a zeros_like every step: a captured step would keep it)
                if "momentum_buffer" not in self.state[p]:
                    self.state[p]["momentum_buffer"] = torch.zeros_like(p.grad)
            buffers = [self.state[p]["momentum_buffer"] for p in params]
            torch._foreach_lerp_(buffers, grads, 1 - group["momentum"])
            updates = torch._foreach_lerp(grads, buffers, group["momentum"]) if group["nesterov"] else buffers
            torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
            if self.batched:
                self._step_stacks(group, params, updates)
                continue
            for p, update in zip(params, updates):
                update = orthogonalize(update, group["ns_coefficients"], group["ns_steps"], group["eps"])
                p.add_(update.to(p.dtype), alpha=-group["lr"] * 0.2 * math.sqrt(max(p.shape)))

    def _step_stacks(self, group: dict, params: list[torch.Tensor], updates: list[torch.Tensor]) -> None:
        stacks: dict[tuple[int, int], list[int]] = {}  # (rows, cols) with rows <= cols -> the matrices' indices
        for i, p in enumerate(params):
            stacks.setdefault((min(p.shape), max(p.shape)), []).append(i)
        for (_, longest), members in stacks.items():
            tall = [params[i].size(0) > params[i].size(1) for i in members]
            x = torch.stack([updates[i].mT if t else updates[i] for i, t in zip(members, tall)]).bfloat16()
            x = orthogonalize_stack(x, group["ns_coefficients"], group["ns_steps"], group["eps"])
            x = x.to(params[members[0]].dtype).unbind()
            # lr may be a device tensor (a captured step, guppy/train/captured.py), which `alpha` cannot take
            steps = torch._foreach_mul([o.mT if t else o for o, t in zip(x, tall)], -group["lr"] * 0.2 * math.sqrt(longest))
            torch._foreach_add_([params[i] for i in members], steps)


def set_lr(optimizer, lr: float) -> None:
    """Every parameter group's learning rate. A captured step's (guppy/train/captured.py) is a tensor on the GPU,
    which the graph reads: it is filled in place."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def build_optimizer(model: torch.nn.Module, *, name: OptimizerName, lr: float, weight_decay: float,
                    betas: tuple[float, float], device_type: str, capturable: bool = False) -> Optimizers:
    """Muon for model.hidden_matrices() (or AdamW for them with name="adamw"); AdamW for the rest.
    Weight decay on matrices and embeddings, not on biases and LayerNorm gains. capturable: AdamW's step count
    stays on the GPU, so that its step can be captured as a CUDA graph (guppy/train/captured.py)."""
    hidden = {id(p) for p in model.hidden_matrices()}
    params = [p for p in model.parameters() if p.requires_grad]
    matrices = [p for p in params if id(p) in hidden]
    embeddings = [p for p in params if p.dim() >= 2 and id(p) not in hidden]
    vectors = [p for p in params if p.dim() < 2]
    adamw = dict(lr=lr, betas=betas, fused=device_type == "cuda", capturable=capturable)
    if name == "adamw":
        return Optimizers(torch.optim.AdamW([{"params": matrices + embeddings, "weight_decay": weight_decay},
                                             {"params": vectors, "weight_decay": 0.0}], **adamw))
    if not hasattr(torch.optim, "Muon"):  # torch.optim.Muon arrived in torch 2.9
        from guppy.errors import GuppyError

        raise GuppyError(f"--optimizer muon needs torch >= 2.9 (this is {torch.__version__}); "
                         "upgrade torch or train with --optimizer adamw")
    # match_rms_adamw scales Muon's step to AdamW's RMS (0.2 * sqrt(max(rows, cols))), so one lr and one
    # weight decay serve both optimizers.
    muon = Muon(matrices, lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw",
                batched=device_type == "cuda")
    rest = torch.optim.AdamW([{"params": embeddings, "weight_decay": weight_decay},
                              {"params": vectors, "weight_decay": 0.0}], **adamw)
    return Optimizers(muon, rest)

"""A training step captured once as a CUDA graph and replayed (guppy/train/trainer.py), in one process on one GPU.

At the guppy preset's shape a step is ~700 kernels, and launching them from Python takes the CPU about as long as
the GPU takes to run them (~20 ms on an H200, tests/bench/GPU_NOTES.md): whatever else the CPU does meanwhile
(logging, packing the next epoch, the progress bar, a checkpoint's copy) delays the GPU. A captured step is one
replay, and the GPU runs it back to back. What that needs:

  - shapes that never change: each batch copied into the same buffers, and the logits and loss taken at a fixed
    number of positions (GPT.forward's `positions`): room for the first batch's targets and 1/16 more. A batch of
    the guppy preset has 53-54% of its positions learned; the LM head and its loss at every position took 3.1 ms
    forward and backward on an H200, at 56% 1.8 ms (tests/bench/bench_lm_head.py). A batch with more targets than
    that room runs in the open;
  - nothing read back and no Python number inside: the learning rate and the loss's scale (1 / the assistant tokens
    of the batch) are device tensors, filled before each replay; AdamW is fused and capturable, and guppy's batched
    Muon takes a tensor learning rate (guppy/train/optim.py);
  - the first steps run in the open, on a side stream as torch.cuda.graph asks: they create the optimizers' state
    and the gradients' memory. The capture itself runs nothing; its replay is the step.

On a CPU (the tests) the same step runs in the open every time: same buffers, same tensors, no graph.
"""

from __future__ import annotations

import torch

IN_THE_OPEN = 2  # steps before the capture


class CapturedSteps:
    """`steps(x, y, n_global)` is one training step on rows x, y (micro, context), as Trainer.train_step does with
    grad_accum 1 in one process. Every parameter group's learning rate becomes one tensor (optim.py: set_lr)."""

    def __init__(self, model, optimizer, *, autocast, grad_clip: float, loss_sum: torch.Tensor):
        self.model, self.optimizer, self.autocast, self.grad_clip = model, optimizer, autocast, grad_clip
        self.loss_sum = loss_sum  # the trainer's: the steps add their loss to it, the log reads and zeroes it
        device = loss_sum.device
        self.on_cuda = device.type == "cuda"
        lr = torch.tensor(float(optimizer.param_groups[0]["lr"]), device=device)
        for group in optimizer.param_groups:
            group["lr"] = lr
        self.scale = torch.zeros((), device=device)
        self.x = self.y = self.graph = self.positions = None
        self.taken = 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor, n_global: int) -> None:
        if self.x is None:
            self.x, self.y = torch.empty_like(x), torch.empty_like(y)
            self.positions = room(n_global, x.numel())
        self.x.copy_(x)
        self.y.copy_(y)
        self.scale.fill_(1.0 / max(1, n_global))
        self.taken += 1
        fits = n_global <= self.positions
        if not self.on_cuda:
            self._step(self.positions if fits else None)
        elif self.taken <= IN_THE_OPEN or not fits:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._step(self.positions if fits else None)
            torch.cuda.current_stream().wait_stream(side)
        else:
            if self.graph is None:
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph):
                    self._step(self.positions)
            self.graph.replay()

    def _step(self, positions: int | None) -> None:
        """positions None: logits where there is a target, found as the forward goes (in the open only)."""
        with self.autocast:
            _, loss = self.model(self.x, self.y, reduction="sum", positions=positions)
            loss = loss * self.scale  # the mean over the batch's assistant tokens
        loss.backward()
        self.loss_sum += loss.detach()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)  # during a capture: the graph keeps the gradients' memory


def room(targets: int, positions: int) -> int:
    """The positions a captured step takes its logits at, from its first batch's `targets` among `positions`: those
    targets and 1/16 more, rounded up to a multiple of 64, and never more than every position."""
    return min(positions, -(-targets * 17 // 16 // 64) * 64)


def captures(cfg, procs, compiled: bool) -> bool:
    """Does this run replay its steps as a CUDA graph? On a GPU in one process, one micro-step a step, no dropout
    (its random numbers would be captured once) and not compiled; where cfg.cuda_graph allows."""
    return (cfg.cuda_graph and procs.device_type == "cuda" and not procs.ddp and cfg.grad_accum == 1
            and cfg.dropout == 0 and not compiled)

"""One process, or one of N under `torchrun --nproc_per_node=N`: which device it trains on, and the
few collectives the trainer needs (barrier, sum, gather). DDP uses gloo on CPU and NCCL on GPU."""

from __future__ import annotations

import os

import torch

from guppy.model.device import pick_device


class Processes:
    """One process, or this process's place under torchrun (RANK, WORLD_SIZE, LOCAL_RANK are set)."""

    def __init__(self, device: str):
        self.rank, self.world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        self.ddp = "RANK" in os.environ and self.world > 1
        device = pick_device(device)
        self.device_type = device
        self.device = torch.device(device)
        if device == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)
        self.started_group = False
        if self.ddp and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if device == "cuda" else "gloo")
            self.started_group = True

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.ddp:
            torch.distributed.barrier()

    def sum(self, *values: float | torch.Tensor) -> list[float]:
        """Sum scalars over processes (one all-reduce)."""
        t = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=self.device).reshape(()) for v in values])
        if self.ddp:
            torch.distributed.all_reduce(t)
        return t.tolist()

    def gather(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{name: tensor} of this process -> {name.rank: tensor} of every process (same shapes)."""
        if not self.ddp:
            return {f"{k}.0": v for k, v in tensors.items()}
        out = {}
        for k, v in sorted(tensors.items()):
            v = v.to(self.device)
            parts = [torch.empty_like(v) for _ in range(self.world)]
            torch.distributed.all_gather(parts, v)
            out.update({f"{k}.{r}": p.cpu() for r, p in enumerate(parts)})
        return out

    def close(self) -> None:
        if self.started_group:
            torch.distributed.destroy_process_group()

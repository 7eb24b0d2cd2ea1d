"""The trainer's batches: which rows of which epoch each step trains on, on the device (guppy/train/trainer.py)."""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from guppy.config import TrainConfig
from guppy.data.reader import Tokenized, epoch_order, pack, pack_whole
from guppy.errors import GuppyError
from guppy.train.processes import Processes


class Batches:
    """Global batch `step` = batch_size consecutive rows of epoch step // steps_per_epoch, in an order
    that comes from (seed, epoch); a rank takes its slice of each global batch, cut into grad_accum
    micro-batches. An epoch's rows go to the device once (a few MB).

    packing "whole": the rows are packed once (guppy/data/reader.py: pack_whole) and each epoch shuffles them.
    packing "stream": each epoch shuffles the conversations and packs them again, back to back."""

    def __init__(self, data: Tokenized, *, context: int, cfg: TrainConfig, procs: Processes, pad_id: int):
        self.data, self.context, self.cfg, self.procs = data, context, cfg, procs
        if cfg.packing == "whole":
            self.rows = pack_whole(data, context=context, pad_id=pad_id, seed=cfg.seed,
                                   order=epoch_order(len(data), seed=cfg.seed, epoch=0))
            rows = len(self.rows[0])
        else:
            rows = (data.tokens - 1) // context
        self.steps_per_epoch = rows // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise GuppyError(f"the train split has {data.tokens:,} tokens: not one batch of {cfg.batch_size} rows of "
                             f"{context}; generate more data or lower the batch size")
        self.micro = cfg.batch_size // procs.world // cfg.grad_accum
        self.epoch = -1
        self.packer = ThreadPoolExecutor(max_workers=1)  # packs the next epoch while this one trains
        self.next: tuple[int, Future] | None = None

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """This rank's rows of global batch `step` as (x, y), each (grad_accum, micro, context), and
        the learned tokens of the whole global batch, which every rank counts from the same rows (no
        communication; counted on the CPU, so the GPU is never waited for)."""
        epoch, b = divmod(step, self.steps_per_epoch)
        if epoch != self.epoch:
            ready = self.next if self.next is not None and self.next[0] == epoch else None
            x, y, self.learned = ready[1].result() if ready else self.rows_of(epoch)
            self.epoch = epoch
            self.x, self.y = x.to(self.procs.device, non_blocking=True), y.to(self.procs.device, non_blocking=True)
            # Packing an epoch takes ~0.1 s of numpy; done here it would leave the GPU waiting at every
            # epoch's start (8 times in the guppy preset's run), so the next epoch is packed meanwhile.
            if (epoch + 1) * self.steps_per_epoch < self.cfg.max_steps:
                self.next = (epoch + 1, self.packer.submit(self.rows_of, epoch + 1))
        B, accum = self.cfg.batch_size, self.cfg.grad_accum
        first = b * B + self.procs.rank * self.micro * accum  # this rank's first row
        rows = slice(first, first + self.micro * accum)
        shape = (accum, self.micro, self.context)
        return self.x[rows].view(shape), self.y[rows].view(shape), sum(self.learned[b * B:(b + 1) * B])

    def rows_of(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Epoch `epoch`'s rows (x, y) in training order, on the CPU (pinned for a GPU), and the learned tokens
        of each row. numpy only: it runs in the packing thread, where a torch op would start a second OpenMP
        team beside the training's, and on 2 cores the two spin against each other (the suite's micro trainings,
        many short epochs, ran 2x slower)."""
        if self.cfg.packing == "whole":
            order = epoch_order(len(self.rows[0]), seed=self.cfg.seed, epoch=epoch)
            x, y = (t.numpy()[order] for t in self.rows)
        else:
            x, y = (t.numpy() for t in pack(self.data, context=self.context,
                                             order=epoch_order(len(self.data), seed=self.cfg.seed, epoch=epoch)))
        learned = (y != -1).sum(axis=1).tolist()
        if self.procs.device_type == "cuda":  # pinned, so that the copy to the GPU does not wait for the CPU
            pinned = [torch.empty(a.shape, dtype=torch.long, pin_memory=True) for a in (x, y)]
            for p, a in zip(pinned, (x, y)):
                np.copyto(p.numpy(), a)
            return *pinned, learned
        return torch.from_numpy(x), torch.from_numpy(y), learned


def data_hash(*splits: Tokenized) -> str:
    """Identifies the tokenized data, so --resume refuses a dataset that changed."""
    h = hashlib.blake2b(digest_size=8)
    for s in splits:
        h.update(s.ids.tobytes())
        h.update(s.learn.tobytes())
        h.update(s.starts.tobytes())
    return h.hexdigest()

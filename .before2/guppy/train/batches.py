"""The trainer's batches: which rows of which epoch each step trains on, on the device (guppy/train/trainer.py)."""

from __future__ import annotations

import hashlib

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

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """This rank's rows of global batch `step` as (x, y), each (grad_accum, micro, context), and
        the learned tokens of the whole global batch, which every rank counts from the same rows (no
        communication; counted on the CPU, so the GPU is never waited for)."""
        epoch, b = divmod(step, self.steps_per_epoch)
        if epoch != self.epoch:
            if self.cfg.packing == "whole":
                order = torch.from_numpy(epoch_order(len(self.rows[0]), seed=self.cfg.seed, epoch=epoch))
                x, y = (t[order] for t in self.rows)
            else:
                x, y = pack(self.data, context=self.context,
                            order=epoch_order(len(self.data), seed=self.cfg.seed, epoch=epoch))
            self.epoch, self.learned = epoch, (y != -1).sum(dim=1).tolist()  # per row
            self.x, self.y = x.to(self.procs.device), y.to(self.procs.device)
        B, accum = self.cfg.batch_size, self.cfg.grad_accum
        first = b * B + self.procs.rank * self.micro * accum  # this rank's first row
        rows = slice(first, first + self.micro * accum)
        shape = (accum, self.micro, self.context)
        return self.x[rows].view(shape), self.y[rows].view(shape), sum(self.learned[b * B:(b + 1) * B])


def data_hash(*splits: Tokenized) -> str:
    """Identifies the tokenized data, so --resume refuses a dataset that changed."""
    h = hashlib.blake2b(digest_size=8)
    for s in splits:
        h.update(s.ids.tobytes())
        h.update(s.learn.tobytes())
        h.update(s.starts.tobytes())
    return h.hexdigest()

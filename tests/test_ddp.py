"""`torchrun --nproc_per_node=2` (gloo, CPU) takes the same steps as one process with the same
global batch: each rank reads half of every batch, and the loss is normalized over the whole batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import weights_differ_by
from guppy.train.trainer import train
from tests.test_data import save_corpus
from tests.test_train import FAST, MICRO, ROOT, losses, micro_preset  # noqa: F401 (fixture)

# Both optimizers in one torchrun: a launch (its agent, two interpreters importing torch) costs more than
# the training. A process group cannot be started twice in a process under torchrun (the second hangs), so
# the first train() starts it, as `guppy train` does, and its close is counted instead of done; the second
# train() then finds the group running and leaves it alone.
DDP_RUN = """
import sys
sys.path.insert(0, {root!r})
import torch.distributed as dist
from guppy import presets
from guppy.train import trainer as t
presets.PRESETS["micro"] = {micro!r}
destroy, closed = dist.destroy_process_group, []
dist.destroy_process_group = lambda *args, **kwargs: closed.append(dist.is_initialized())
for optimizer in {optimizers!r}:
    t.train(persona="fish", data={data!r}, out={out!r} + "/" + optimizer, max_steps={steps}, **{fast!r},
            optimizer=optimizer)
assert closed == [True], closed  # the first run closed the group it started, the second left it
destroy()
"""
OPTIMIZERS = ["adamw", "muon"]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    data = save_corpus(tmp_path / "data")
    steps = 20
    script = tmp_path / "ddp.py"
    script.write_text(DDP_RUN.format(root=str(ROOT), micro=MICRO, data=str(data), out=str(tmp_path / "ddp"),
                                     steps=steps, fast=FAST, optimizers=OPTIMIZERS))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for optimizer in OPTIMIZERS:
        ddp, one = tmp_path / "ddp" / optimizer, tmp_path / "one" / optimizer
        config = json.loads((ddp / "train_config.json").read_text())
        assert config["world_size"] == 2 and config["train"]["optimizer"] == optimizer

        train(persona="fish", data=data, out=one, max_steps=steps, **FAST, optimizer=optimizer)
        # Float noise alone (1 vs 2 threads) stays at ~1e-5 of loss with either optimizer (Muon's Newton-Schulz
        # runs in float32 on a CPU), so both check the gradient averaging to the last digits, the weights too.
        assert losses(ddp) == pytest.approx(losses(one), rel=1e-4), optimizer
        assert losses(ddp, "eval") == pytest.approx(losses(one, "eval"), rel=1e-4), optimizer
        assert not list(ddp.glob("ckpt/.*")), "only rank 0 writes, and it finishes what it writes"
        a = load_file(str(ddp / "ckpt" / "last" / "model.safetensors"))
        b = load_file(str(one / "ckpt" / "last" / "model.safetensors"))
        # Compared relative to the weights, so the bound does not depend on the thread count: float noise
        # measured 2.4e-3 (AdamW) and 2.7e-4 (Muon) of them at 1 and at 2 threads; averaging per-rank mean
        # losses instead (the classic DDP mistake) moves weights ~6e-2, about their own size.
        assert weights_differ_by(a, b) < 1e-2, optimizer

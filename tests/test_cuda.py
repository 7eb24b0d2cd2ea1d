"""The trainer's GPU path: bf16 autocast, fused capturable AdamW and the step replayed as a CUDA graph.

Skipped where no GPU is visible (CI has none); run on a GPU machine with `python -m pytest tests/test_cuda.py`.
The step that the graph captures is the same `Trainer.train_step` that every CPU test runs eagerly."""

from __future__ import annotations

import pytest
import torch

from guppy.train import train
from tests.test_train import FAST, STEPS, assert_same_run, interrupt, losses, weights  # noqa: F401
from tests.test_train import corpus, micro_preset  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
GPU = {**FAST, "device": "cuda"}


def test_a_graphed_run_takes_the_same_steps_as_an_eager_one(tmp_path, corpus):
    graphed = train(persona="fish", data=corpus, out=tmp_path / "graph", max_steps=STEPS, **GPU)
    eager = train(persona="fish", data=corpus, out=tmp_path / "eager", max_steps=STEPS, cuda_graph=False, **GPU)
    assert "CUDA graph" in graphed["device"] and "CUDA graph" not in eager["device"]
    # Replaying a graph runs the kernels the eager step launched: the curves agree to float noise.
    assert losses(tmp_path / "graph") == pytest.approx(losses(tmp_path / "eager"), rel=1e-3)
    assert losses(tmp_path / "graph", "eval") == pytest.approx(losses(tmp_path / "eager", "eval"), rel=1e-3)
    a, b = weights(tmp_path / "graph"), weights(tmp_path / "eager")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-3
    assert losses(tmp_path / "graph")[-1] < 0.5 * losses(tmp_path / "graph")[0]  # and it learns


def test_a_graphed_run_resumes_exactly_after_ctrl_c(tmp_path, corpus):
    whole = tmp_path / "whole"
    train(persona="fish", data=corpus, out=whole, max_steps=STEPS, **GPU)
    done = interrupt(tmp_path, corpus, at=27, signal="SIGINT", device="cuda")
    assert done.returncode != 0 and "interrupted at step 27" in done.stderr, done.stderr[-2000:]
    train(persona="fish", data=corpus, out=tmp_path / "fish", max_steps=STEPS, resume=True, **GPU)
    assert_same_run(tmp_path / "fish", whole, tolerance=1e-5)

"""The trainer's GPU path: bf16 autocast, Muon and fused AdamW, TF32 matmuls.

Skipped where no GPU is visible (CI has none); run on a GPU machine with `python -m pytest tests/test_cuda.py`.
The code is the CPU tests' code with other kernels, so these check only what the kernels could change."""

from __future__ import annotations

import pytest
import torch

from guppy.train.trainer import train
from tests.test_train import FAST, STEPS, assert_same_run, interrupt, losses
from tests.test_train import corpus, micro_preset  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
GPU = {**FAST, "device": "cuda"}


def test_a_gpu_run_learns_as_a_cpu_run_does(tmp_path, corpus):
    gpu = train(persona="fish", data=corpus, out=tmp_path / "gpu", max_steps=STEPS, **GPU)
    cpu = train(persona="fish", data=corpus, out=tmp_path / "cpu", max_steps=STEPS, **{**FAST, "device": "cpu"})
    assert gpu["device"].startswith("cuda") and cpu["device"] == "cpu"
    curve = losses(tmp_path / "gpu")
    assert curve[-1] < 0.5 * curve[0]
    # bf16 rounding moves the curve a little, never far: the same steps, the same data.
    assert gpu["best_test_loss"] == pytest.approx(cpu["best_test_loss"], rel=0.05)


def test_a_gpu_run_resumes_exactly_after_ctrl_c(tmp_path, corpus):
    whole = tmp_path / "whole"
    train(persona="fish", data=corpus, out=whole, max_steps=STEPS, **GPU)
    done = interrupt(tmp_path, corpus, at=27, signal="SIGINT", device="cuda")
    assert done.returncode != 0 and "interrupted at step 27" in done.stderr, done.stderr[-2000:]
    train(persona="fish", data=corpus, out=tmp_path / "fish", max_steps=STEPS, resume=True, **GPU)
    # Float atomics in some GPU kernels make two runs differ in the last bits, not more.
    assert_same_run(tmp_path / "fish", whole, tolerance=1e-4)


def test_the_evaluator_samples_on_the_gpu_as_on_the_cpu(mini_run):
    """guppy eval runs the model on the GPU; its uniform numbers are drawn on the CPU (guppy/model/sampler.py),
    so a seed gives the same replies on either device, but for a near tie the devices' rounding tips over."""
    from guppy.config import CHAT
    from guppy.model.checkpoint import load_model
    from guppy.model.sampler import complete

    cpu, tokenizer, _ = load_model(mini_run)
    gpu, _, _ = load_model(mini_run, device="cuda")
    prompts = ["are you hungry", "hello", "how are you", "what do you like", "tell me about the tank"] * 12
    on_cpu, on_gpu = (complete(m, tokenizer, prompts, seed=0, temperature=CHAT.temperature, top_p=CHAT.top_p)
                      for m in (cpu, gpu))
    assert sum(a == b for a, b in zip(on_cpu, on_gpu)) >= 0.9 * len(prompts)

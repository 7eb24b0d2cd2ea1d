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
AS_THE_PRESET = dict(learn_block_norms=False, learn_block_biases=False, bf16_residual=True)  # the guppy preset's


def test_a_gpu_run_learns_as_a_cpu_run_does(tmp_path, corpus):
    gpu = train(persona="fish", data=corpus, out=tmp_path / "gpu", max_steps=STEPS, **GPU)
    cpu = train(persona="fish", data=corpus, out=tmp_path / "cpu", max_steps=STEPS, **{**FAST, "device": "cpu"})
    assert gpu["device"].startswith("cuda") and cpu["device"] == "cpu"
    curve = losses(tmp_path / "gpu")
    assert curve[-1] < 0.5 * curve[0]
    # bf16 rounding moves the curve a little, never far: the same steps, the same data.
    assert gpu["best_test_loss"] == pytest.approx(cpu["best_test_loss"], rel=0.05)


def test_steps_replayed_as_a_cuda_graph_learn_as_steps_in_the_open(tmp_path, corpus):
    """guppy/train/captured.py: a step captured once and replayed gives the curve of steps launched one by one
    (its loss is taken at a fixed number of positions, so summed in another order: the last bits differ, not more)."""
    replayed = train(persona="fish", data=corpus, out=tmp_path / "graph", max_steps=STEPS, **AS_THE_PRESET, **GPU)
    launched = train(persona="fish", data=corpus, out=tmp_path / "open", max_steps=STEPS, **AS_THE_PRESET,
                     cuda_graph=False, **GPU)
    assert "CUDA graph" in replayed["device"] and "CUDA graph" not in launched["device"]
    curve = losses(tmp_path / "graph")
    assert curve[-1] < 0.5 * curve[0]
    assert curve == pytest.approx(losses(tmp_path / "open"), rel=1e-2)
    assert replayed["best_test_loss"] == pytest.approx(launched["best_test_loss"], rel=1e-2)


def test_a_gpu_run_resumes_exactly_after_ctrl_c(tmp_path, corpus):
    """With the blocks' LayerNorms and biases fixed and the residual stream in bf16, as the guppy preset trains."""
    whole = tmp_path / "whole"
    train(persona="fish", data=corpus, out=whole, max_steps=STEPS, **AS_THE_PRESET, **GPU)
    done = interrupt(tmp_path, corpus, at=27, signal="SIGINT", device="cuda", **AS_THE_PRESET)
    assert done.returncode != 0 and "interrupted at step 27" in done.stderr, done.stderr[-2000:]
    train(persona="fish", data=corpus, out=tmp_path / "fish", max_steps=STEPS, resume=True, **AS_THE_PRESET, **GPU)
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


def test_the_evaluator_on_the_gpu_fits_its_classifier_and_draws_its_charts_in_other_processes(mini_run, monkeypatch,
                                                                                               tmp_path):
    """With the model on a GPU, `guppy eval` fits the topic classifier and draws the charts in spawned processes
    (guppy/elsewhere.py) while the model samples: this process neither fits nor draws, and the report is whole."""
    import guppy.eval.on_topic as on_topic
    import guppy.eval.report as charts  # where write_report's charts find new_figure
    from guppy.eval.commands import evaluate
    from tests.trained import copy_of_run

    def not_here(*args, **kwargs):
        raise AssertionError("done in this process")

    run = copy_of_run(mini_run, tmp_path)  # the report is written into the run: a copy of the shared one
    monkeypatch.setattr(on_topic, "fit_classifier", not_here)
    monkeypatch.setattr(charts, "new_figure", not_here)
    report = evaluate(persona=str(mini_run.parents[1] / "personas" / "mini.yaml"), run=run, samples=2,
                      data=run / "data", device="cuda")
    assert report["on_topic"] is not None and report["on_topic"]["ceiling"] > 0.5
    assert (run / "eval" / "associations.png").stat().st_size > 0 and (run / "eval" / "turns.png").stat().st_size > 0


def test_decode_steps_captured_as_a_cuda_graph_say_what_steps_in_the_open_say(mini_run, monkeypatch):
    """On a GPU, generate() captures its one-token step once as a CUDA graph and replays it (sampler.CapturedStep):
    the same greedy replies as steps issued one kernel at a time, and sampled ones but for near ties."""
    import guppy.model.sampler as sampler
    from guppy.config import CHAT
    from guppy.model.checkpoint import load_model
    from guppy.model.sampler import complete

    captures, real = [], sampler.CapturedStep

    def counted(*args):
        captures.append(args)
        return real(*args)

    monkeypatch.setattr(sampler, "CapturedStep", counted)
    model, tokenizer, _ = load_model(mini_run, device="cuda")
    prompts = ["are you hungry", "hello", "how are you", "what do you like", "tell me about the tank"] * 12

    def replies():
        return (complete(model, tokenizer, prompts, temperature=0.0),
                complete(model, tokenizer, prompts, seed=0, temperature=CHAT.temperature, top_p=CHAT.top_p))
    captured_greedy, captured_sampled = replies()
    assert len(captures) == 2
    monkeypatch.setattr(sampler, "captures_steps", lambda device: False)
    open_greedy, open_sampled = replies()
    assert len(captures) == 2 and captured_greedy == open_greedy
    assert sum(a == b for a, b in zip(captured_sampled, open_sampled)) >= 0.9 * len(prompts)

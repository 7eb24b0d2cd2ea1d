"""The trainer: its lr schedule, that it learns a persona, that it is reproducible, that it resumes
exactly after a SIGKILL, and that every bad input is a one-line GuppyError.

Runs use a `micro` model shape (2 layers, d=64, 64-token context) registered for these tests only,
on the fish corpus of tests/test_data.py: a few seconds each on a 2-core CPU."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import weights_differ_by
from guppy.errors import GuppyError
from guppy.presets import PRESETS
from guppy.train.trainer import TrainConfig, lr_at, resolve_config, train
from tests.test_data import save_corpus

ROOT = Path(__file__).resolve().parents[1]
MICRO = dict(PRESETS["tiny"], about="tests only", n_layer=2, n_head=2, d_model=64, d_ff=256, context=64)
FAST = dict(preset="micro", batch_size=8, lr=1e-2, min_lr=1e-3, warmup_steps=10, eval_every=20, eval_batches=2,
            log_every=5, vocab_size=400, progress=False)


@pytest.fixture(scope="module", autouse=True)
def micro_preset():
    """The micro preset, and one thread: exact-resume compares a run split across two processes with one
    run in this process, bit for bit, and a float sum split over several threads can round differently."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(PRESETS, "micro", MICRO)
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return save_corpus(tmp_path_factory.mktemp("fish") / "data")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus) -> tuple[Path, dict]:
    """One short finished run, shared by the tests that only read it (copy it to change it)."""
    run = tmp_path_factory.mktemp("trained") / "fish"
    return run, train(persona="fish", data=corpus, out=run, max_steps=160, **FAST)


def losses(run: Path, kind: str = "train") -> list[float]:
    key = "loss" if kind == "train" else "test_loss"
    return [r[key] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "ckpt" / "last" / "model.safetensors"))


# ---------------------------------------------------------------------------------- schedule

def test_lr_warms_up_linearly_then_decays_by_cosine_to_min_lr():
    cfg = TrainConfig(max_steps=1000, warmup_steps=100, lr=1e-3, min_lr=1e-4)
    warm = [lr_at(s, cfg) for s in range(100)]
    assert warm[0] == pytest.approx(1e-5) and warm[-1] == pytest.approx(1e-3)
    assert all(b - a == pytest.approx(1e-5) for a, b in zip(warm, warm[1:]))
    decay = [lr_at(s, cfg) for s in range(100, 1001)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))
    assert lr_at(100, cfg) == pytest.approx(1e-3)
    assert lr_at(550, cfg) == pytest.approx(5.5e-4)  # halfway down the cosine: the mean of lr and min_lr
    assert lr_at(1000, cfg) == pytest.approx(1e-4) and lr_at(5000, cfg) == pytest.approx(1e-4)


def test_lr_without_warmup_starts_at_the_peak():
    cfg = TrainConfig(max_steps=10, warmup_steps=0, lr=2e-3, min_lr=0.0)
    assert lr_at(0, cfg) == pytest.approx(2e-3) and lr_at(10, cfg) == 0.0


def test_presets_resolve_to_their_defaults_and_overrides_win():
    assert resolve_config("tiny").device == "auto"
    assert resolve_config("guppy").batch_size > resolve_config("tiny").batch_size
    assert resolve_config("tiny", lr=1e-4, max_steps=None).lr == 1e-4


# ---------------------------------------------------------------------------------- learning

def test_loss_falls_and_the_model_learns_the_persona(trained):
    from guppy.model.checkpoint import load_model

    run, summary = trained
    train_curve, test_curve = losses(run), losses(run, "eval")
    assert train_curve[-1] < 0.4 * train_curve[0]
    assert test_curve[-1] < 0.4 * test_curve[0] and summary["best_test_loss"] <= min(test_curve) + 1e-9
    model, tokenizer, meta = load_model(run)
    assert meta["step"] == summary["best_step"]

    def likeliest_next(prompt: str) -> str:
        ids = tokenizer.encode_prompt([{"role": "user", "content": prompt}])
        logits, _ = model(torch.tensor([ids]))
        return tokenizer.decode([int(logits[0, -1].argmax())]).strip()

    assert likeliest_next("what is the meaning of life") == "food"
    assert likeliest_next("how are you today 3") != "food"


def test_a_run_writes_checkpoints_metrics_plot_and_its_config(trained):
    run, summary = trained
    for name in ("ckpt/best/model.safetensors", "ckpt/last/trainer_state.safetensors", "tokenizer/tokenizer.json",
                 "metrics.jsonl", "loss.png", "train_config.json"):
        assert (run / name).exists(), name
    assert (run / "loss.png").read_bytes()[:4] == b"\x89PNG"
    config = json.loads((run / "train_config.json").read_text())
    assert config["train"]["max_steps"] == 160 and config["train"]["preset"] == "micro"
    assert summary["steps"] == 160 and summary["tokens_per_s"] > 0 and summary["run"] == str(run)
    assert not list(run.glob("ckpt/.*")), "no temporary folders left behind"


def test_on_a_gpu_loss_png_is_drawn_in_a_second_process_the_same_as_here(tmp_path, corpus, trained, monkeypatch):
    """On a GPU the trainer has loss.png drawn in a second process (trainer.draws_elsewhere, guppy/elsewhere.py).
    Asked for here, on a CPU: this process draws nothing, and the chart is the one drawn here, byte for byte."""
    import guppy.train.metrics as metrics
    import guppy.train.trainer as trainer

    def not_here(*args, **kwargs):
        raise AssertionError("drawn in this process")

    monkeypatch.setattr(trainer, "draws_elsewhere", lambda procs: True)
    monkeypatch.setattr(metrics, "new_figure", not_here)
    run = tmp_path / trained[0].name  # the chart's title names the run's folder
    train(persona="fish", data=corpus, out=run, max_steps=160, **FAST)
    assert (run / "loss.png").read_bytes() == (trained[0] / "loss.png").read_bytes()
    assert (run / "metrics.jsonl").read_text().count("\n") == (trained[0] / "metrics.jsonl").read_text().count("\n")


def test_same_seed_gives_the_same_loss_curve(tmp_path, corpus):
    runs = {name: tmp_path / name for name in ("a", "b", "c")}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        train(persona="fish", data=corpus, out=runs[name], max_steps=30, seed=seed, **FAST)
    assert losses(runs["a"]) == losses(runs["b"]) and losses(runs["a"], "eval") == losses(runs["b"], "eval")
    assert losses(runs["a"]) != losses(runs["c"])


def test_stream_packing_still_trains_reproducibly_on_other_rows(tmp_path, corpus):
    """--packing stream (GPT-2's back-to-back rows) is kept beside the default whole packing."""
    for name in ("a", "b"):
        train(persona="fish", data=corpus, out=tmp_path / name, max_steps=40, packing="stream", **FAST)
    train(persona="fish", data=corpus, out=tmp_path / "whole", max_steps=40, **FAST)
    stream = losses(tmp_path / "a")
    assert stream == losses(tmp_path / "b") and stream[-1] < 0.7 * stream[0]
    assert stream != losses(tmp_path / "whole")  # other rows, so another curve


INTERRUPTED_RUN = """
import os, signal, sys
import torch
torch.set_num_threads(1)  # as the run it is compared with (see micro_preset)
sys.path.insert(0, {root!r})
from guppy import presets
from guppy.train import trainer as t
presets.PRESETS["micro"] = {micro!r}
real_lr_at = t.lr_at

def lr_at(step, cfg):  # the loop asks for each step's lr first: be interrupted there, between checkpoints
    if step == {at}:
        os.kill(os.getpid(), signal.{signal})
    return real_lr_at(step, cfg)

t.lr_at = lr_at
t.train(persona="fish", data={data!r}, out={out!r}, max_steps={steps}, **{fast!r})
"""
STEPS = 60  # checkpoints every 20 steps


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, corpus) -> Path:
    run = tmp_path_factory.mktemp("whole") / "fish"
    train(persona="fish", data=corpus, out=run, max_steps=STEPS, **FAST)
    return run


def interrupt(tmp_path: Path, corpus: Path, *, at: int, signal: str,
              device: str = "cpu", **options) -> subprocess.CompletedProcess:
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED_RUN.format(root=str(ROOT), micro=MICRO, at=at, signal=signal, data=str(corpus),
                                             out=str(tmp_path / "fish"), steps=STEPS,
                                             fast={**FAST, "device": device, **options}))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)


def assert_same_run(a: Path, b: Path, tolerance: float = 1e-6) -> None:
    assert losses(a) == pytest.approx(losses(b), abs=tolerance)
    assert losses(a, "eval") == pytest.approx(losses(b, "eval"), abs=tolerance)
    assert len(losses(a)) == STEPS // FAST["log_every"]  # nothing logged twice
    wa, wb = weights(a), weights(b)
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= tolerance


def test_resume_after_sigkill_continues_the_exact_run(tmp_path, corpus, uninterrupted):
    done = interrupt(tmp_path, corpus, at=47, signal="SIGKILL")
    assert done.returncode == -9, done.stderr[-2000:]
    run = tmp_path / "fish"
    assert json.loads((run / "ckpt/last/trainer_state.json").read_text())["step"] == 40
    assert max(json.loads(r)["step"] for r in (run / "metrics.jsonl").read_text().splitlines()) == 45
    summary = train(persona="fish", data=corpus, out=run, max_steps=STEPS, resume=True, **FAST)
    assert_same_run(run, uninterrupted)
    assert summary["best_test_loss"] == pytest.approx(min(losses(uninterrupted, "eval")), abs=1e-6)


def test_ctrl_c_saves_where_it_stopped_and_resumes_exactly(tmp_path, corpus, uninterrupted):
    done = interrupt(tmp_path, corpus, at=27, signal="SIGINT")
    assert done.returncode != 0 and "interrupted at step 27" in done.stderr and "--resume" in done.stderr
    run = tmp_path / "fish"
    assert json.loads((run / "ckpt/last/trainer_state.json").read_text())["step"] == 27
    train(persona="fish", data=corpus, out=run, max_steps=STEPS, resume=True, **FAST)
    assert_same_run(run, uninterrupted)


# ---------------------------------------------------------------------------------- bad input

def test_unknown_preset_is_refused(tmp_path, corpus):
    with pytest.raises(GuppyError, match="unknown preset 'huge'; choose one of: tiny, small, guppy"):
        train(persona="fish", data=corpus, out=tmp_path / "r", preset="huge")


def test_unknown_or_invalid_option_is_refused():
    with pytest.raises(GuppyError, match="training option bogus: Extra inputs are not permitted"):
        resolve_config("tiny", bogus=1)
    with pytest.raises(GuppyError, match="training option lr: Input should be greater than 0"):
        resolve_config("tiny", lr=-1.0)


def test_missing_dataset_says_to_generate_it(tmp_path):
    with pytest.raises(GuppyError, match=r"no dataset here; run `guppy generate-data fish`"):
        train(persona="fish", out=tmp_path / "runs" / "fish", **FAST)


def test_cuda_without_a_gpu_is_refused(tmp_path, corpus):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(GuppyError, match="--device cuda: no CUDA GPU is visible"):
        train(persona="fish", data=corpus, out=tmp_path / "r", device="cuda", **FAST)


def test_resume_with_nothing_to_resume_is_refused(tmp_path, corpus):
    with pytest.raises(GuppyError, match=r"nothing to resume in .*train without --resume"):
        train(persona="fish", data=corpus, out=tmp_path / "empty", resume=True, **FAST)


def test_resume_with_another_config_is_refused(tmp_path, corpus, trained):
    run = shutil.copytree(trained[0], tmp_path / "fish")
    with pytest.raises(GuppyError, match=r"trained with another config: lr=0.01 \(now 0.001\)"):
        train(persona="fish", data=corpus, out=run, max_steps=200, resume=True, **{**FAST, "lr": 1e-3})


def test_resume_with_another_tokenizer_is_refused(tmp_path, corpus, trained):
    from guppy.model.tokenizer import train_tokenizer

    run = shutil.copytree(trained[0], tmp_path / "fish")
    shutil.rmtree(run / "tokenizer")
    train_tokenizer(["some other words entirely"] * 50, vocab_size=300).save(run / "tokenizer")
    with pytest.raises(GuppyError, match=r"is not the tokenizer .* was trained with"):
        train(persona="fish", data=corpus, out=run, max_steps=200, resume=True, **FAST)


def test_resume_from_a_corrupted_checkpoint_is_refused(tmp_path, corpus, trained):
    run = shutil.copytree(trained[0], tmp_path / "fish")
    state = run / "ckpt" / "last" / "trainer_state.safetensors"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    with pytest.raises(GuppyError, match=r"trainer_state.safetensors: missing or corrupted"):
        train(persona="fish", data=corpus, out=run, max_steps=200, resume=True, **FAST)


def test_resume_with_more_steps_extends_the_run(tmp_path, corpus, trained):
    run = shutil.copytree(trained[0], tmp_path / "fish")
    summary = train(persona="fish", data=corpus, out=run, max_steps=180, resume=True, **FAST)
    assert summary["steps"] == 180 and len(losses(run)) == 180 // FAST["log_every"]
    assert not math.isnan(summary["test_loss"])


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_gradient_accumulation_takes_the_same_steps(tmp_path, corpus, optimizer):
    fast = {**FAST, "optimizer": optimizer}
    train(persona="fish", data=corpus, out=tmp_path / "one", max_steps=20, **fast)
    train(persona="fish", data=corpus, out=tmp_path / "two", max_steps=20, grad_accum=2, **fast)
    # Summing the gradient in two halves rounds differently, by ~1e-6 of the loss; dropping half the
    # batch moves it by percents. (torch's own Muon, bf16 Newton-Schulz on a GPU, needs 2e-3.)
    assert losses(tmp_path / "one") == pytest.approx(losses(tmp_path / "two"), rel=1e-4)
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    # float noise only: measured 2.4e-3 (AdamW) and 2.7e-4 (Muon) of the weights at 1 and at 2 threads
    assert weights_differ_by(a, b) < 1e-2


def test_the_gpu_warm_up_leaves_the_model_and_random_state_as_they_were():
    """guppy/train/warm_up.py runs a forward and backward before the optimizer exists (on a GPU, while torch._dynamo
    imports): afterwards no gradient, the same weights and the same random state, so the run is the run without it.
    The module it imports meanwhile is imported; one that cannot be is left to whoever needs it."""
    from contextlib import nullcontext

    from guppy.model.gpt import GPT, ModelConfig
    from guppy.train.warm_up import import_meanwhile, warm_up

    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=50, context=16, n_layer=1, n_head=2, d_model=16, d_ff=32, dropout=0.1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randint(0, 50, (4, 16))
    rng = torch.get_rng_state()
    sys.modules.pop("colorsys", None)
    warm_up(model, x, x, nullcontext(), import_meanwhile(("colorsys", "no_such_module_here")))
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng) and "colorsys" in sys.modules
    assert sys.getswitchinterval() == pytest.approx(0.005)

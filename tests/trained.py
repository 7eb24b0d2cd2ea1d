"""The trained models the tests share, each made once per session (conftest.py's fixtures):
    train_mini    the mini persona: 400 conversations, 150 steps of the tiny preset at a pinned learning
                  rate, after which it answers "are you hungry" with food words (at 40 steps it says
                  "i feel."). Read by the tests of export, inspect, ONNX, the web page, hostile options.
    train_medaka  a Japanese persona: 3,000 conversations and a micro model trained 300 steps.
                  Read by test_japanese and the Japanese playground test.
    train_kana    the same persona's character-level tokenizer on 400 conversations and a 2 x 64 GELU
                  model trained 30 steps: enough for llama.cpp to tokenize and answer as torch does
                  (test_gguf), no more."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_persona


EXPORTS = ("hf", "hf-dataset", "onnx", "web", "inspect", "gguf")  # what tests write into a shared run


def copy_of_run(run: Path, root: Path) -> Path:
    """A copy of a shared trained run at root/runs/NAME, without what other tests exported into it, so
    that a module writing to the default folders (runs/NAME/hf, ...) or changing it stays in its own folder."""
    import shutil

    copy = root / "runs" / run.name
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(*EXPORTS))
    return copy


def train_mini(root: Path, **overrides) -> Path:
    from guppy.train.trainer import train
    from pipeline.generate import generate_data

    persona = write_persona(root)
    run = root / "runs" / "mini"
    generate_data(persona=persona, n=400, out=run / "data")
    train(persona=str(persona), out=run, preset="tiny", max_steps=150, batch_size=16, lr=4e-3, warmup_steps=2,
          eval_every=30, eval_batches=1, log_every=10, vocab_size=400, device="cpu", progress=False,
          **overrides)
    return run


def train_medaka(root: Path) -> Path:
    """personas/medaka.yaml, runs/medaka/data and runs/medaka under root; returns root."""
    import pytest
    from typer.testing import CliRunner

    from cli import app
    from guppy.presets import PRESETS
    from guppy.train.trainer import train
    from tests.test_japanese import MICRO
    from tests.test_language import JA_PERSONA, JA_TEMPLATES

    write_persona(root, JA_PERSONA, JA_TEMPLATES)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setitem(PRESETS, "micro", MICRO)
        result = CliRunner().invoke(app, ["generate-data", "medaka", "--n", "3000"])
        assert result.exit_code == 0, result.output
        train(persona="medaka", preset="micro", max_steps=300, batch_size=16, lr=1e-2, min_lr=1e-3, warmup_steps=10,
              eval_every=60, eval_batches=2, log_every=10, vocab_size=400, progress=False)
    return root


def train_kana(root: Path) -> Path:
    from guppy.train.trainer import train
    from pipeline.generate import generate_data
    from tests.test_language import JA_PERSONA, JA_TEMPLATES

    persona = write_persona(root, JA_PERSONA, JA_TEMPLATES)
    run = root / "runs" / "medaka"
    generate_data(persona=persona, n=400, out=run / "data")
    train(persona=str(persona), out=run, preset="tiny", max_steps=30, batch_size=16, lr=1e-2, warmup_steps=2,
          eval_every=30, eval_batches=1, log_every=10, vocab_size=400, device="cpu", progress=False,
          n_layer=2, n_head=2, d_model=64, d_ff=256, activation="gelu")
    return run

"""A tiny model trained on the mini persona, for the tests of what reads a trained run (inspect,
ONNX, the web page): 400 conversations, 150 steps of the tiny preset at a pinned learning rate,
after which it answers "are you hungry" with food words (at 40 steps it says "i feel.")."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_persona


def train_mini(root: Path) -> Path:
    from guppy.train.trainer import train
    from pipeline.generate import generate_data

    persona = write_persona(root)
    run = root / "runs" / "mini"
    generate_data(persona=persona, n=400, out=run / "data")
    train(persona=str(persona), out=run, preset="tiny", max_steps=150, batch_size=16, lr=4e-3, warmup_steps=2,
          eval_every=30, eval_batches=1, log_every=10, vocab_size=400, device="cpu", progress=False)
    return run

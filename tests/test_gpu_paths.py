"""The trainer's GPU-only speed-ups, checked on a CPU (CI has no GPU; tests/test_cuda.py runs them on one):
Muon's batched Newton-Schulz (guppy/train/optim.py) and the cache of prepared data (guppy/train/prepared.py)."""

from __future__ import annotations

import pytest
import torch

import guppy.train.trainer as trainer_module
from guppy.train.optim import Muon
from guppy.train.prepared import cache_root
from guppy.train.trainer import train
from tests.test_train import FAST, STEPS, assert_same_run, weights
from tests.test_train import corpus, micro_preset  # noqa: F401 (fixtures)


def test_batched_muon_steps_as_torchs_muon_does():
    """Stacked by shape (a tall matrix transposed into its wide twin's stack), the same bf16 iteration as
    torch.optim.Muon's one matrix at a time: the same parameters up to bf16 rounding, the same state."""
    torch.manual_seed(0)
    shapes = [(48, 16), (16, 48), (16, 16), (16, 16), (32, 16)]
    ours, theirs = ([torch.nn.Parameter(torch.randn(s)) for s in shapes] for _ in range(2))
    for a, b in zip(ours, theirs):
        b.data.copy_(a.data)
    options = dict(lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    mine, torchs = Muon(ours, batched=True, **options), torch.optim.Muon(theirs, **options)
    for _ in range(3):
        for a, b in zip(ours, theirs):
            a.grad = torch.randn(a.shape)
            b.grad = a.grad.clone()
        mine.step()
        torchs.step()
    for a, b in zip(ours, theirs):
        moved = (b.detach() - b.grad).abs().max().item()  # not vacuous: both moved the weights
        assert moved > 0.01
        assert a.detach() == pytest.approx(b.detach(), abs=2e-3)
    assert mine.state_dict()["state"].keys() == torchs.state_dict()["state"].keys()
    for i, state in mine.state_dict()["state"].items():
        assert state["momentum_buffer"] == pytest.approx(torchs.state_dict()["state"][i]["momentum_buffer"])


def test_a_second_run_on_the_same_data_comes_from_the_cache(tmp_path, corpus, monkeypatch):
    first = train(persona="fish", data=corpus, out=tmp_path / "first", max_steps=STEPS, **FAST)
    assert len(list((cache_root() / "prepared").iterdir())) == 1

    def not_read(*args, **kwargs):
        raise AssertionError("the dataset was read again")

    with monkeypatch.context() as mp:
        mp.setattr(trainer_module, "load_conversations", not_read)
        second = train(persona="fish", data=corpus, out=tmp_path / "second", max_steps=STEPS, **FAST)
    assert_same_run(tmp_path / "second", tmp_path / "first", tolerance=0)
    assert second["train_tokens"] == first["train_tokens"]
    assert (tmp_path / "second" / "tokenizer" / "tokenizer.json").read_bytes() == \
        (tmp_path / "first" / "tokenizer" / "tokenizer.json").read_bytes()
    # Another setting that shapes the prepared data is another entry, prepared afresh.
    train(persona="fish", data=corpus, out=tmp_path / "third", max_steps=STEPS, **{**FAST, "vocab_size": 420})
    assert len(list((cache_root() / "prepared").iterdir())) == 2


def test_a_changed_dataset_is_not_taken_from_the_cache(tmp_path, corpus):
    import shutil

    data = shutil.copytree(corpus, tmp_path / "data")
    train(persona="fish", data=data, out=tmp_path / "before", max_steps=STEPS, **FAST)
    arrow = next((data / "train").glob("*.arrow"))
    arrow.write_bytes(next((data / "test").glob("*.arrow")).read_bytes())  # the test rows as the train split
    train(persona="fish", data=data, out=tmp_path / "after", max_steps=STEPS, **FAST)
    assert len(list((cache_root() / "prepared").iterdir())) == 2
    wb, wa = weights(tmp_path / "before"), weights(tmp_path / "after")
    assert any(not torch.equal(wb[k], wa[k]) for k in wb if wb[k].shape == wa[k].shape)

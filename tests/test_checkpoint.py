"""One checkpoint format: safetensors + JSON (never pickle), saved atomically, loaded by one
function that refuses a missing, corrupted or mismatched checkpoint in one line."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from guppy.errors import GuppyError
from guppy.model.checkpoint import CheckpointWriter, load_model, load_trainer_state, save_checkpoint
from guppy.model.gpt import GPT, ModelConfig
from tests.test_data import fish_corpus


@pytest.fixture(scope="module")
def tokenizer():
    from guppy.model.tokenizer import train_tokenizer

    return train_tokenizer([m["content"] for c in fish_corpus() for m in c], vocab_size=400)


def small_model(tokenizer, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(vocab_size=tokenizer.vocab_size, context=32, n_layer=1, n_head=2, d_model=32, d_ff=64))


def save(folder: Path, model, tokenizer, step: int = 1) -> Path:
    save_checkpoint(folder, model=model, tokenizer=tokenizer, meta={"model": model.config.model_dump(), "step": step})
    return folder


def test_round_trip_gives_the_same_model_and_stores_the_tied_head_once(tmp_path, tokenizer):
    model = small_model(tokenizer)
    save(tmp_path / "ckpt", model, tokenizer)
    loaded, tok, meta = load_model(tmp_path / "ckpt")
    x = torch.tensor([tokenizer.encode("i feel happy")])
    assert torch.equal(model.eval()(x)[0], loaded(x)[0])
    assert tok.fingerprint() == tokenizer.fingerprint() == meta["tokenizer"] and meta["step"] == 1
    with safe_open(str(tmp_path / "ckpt" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert len({"lm_head.weight", "transformer.wte.weight"} & keys) == 1
    assert loaded.lm_head.weight is loaded.transformer.wte.weight  # still tied after loading


AUDIT: list | None = None  # while a list, the audit hook below records into it


def _audit(event: str, args: tuple) -> None:
    if AUDIT is not None and event in ("open", "pickle.find_class"):
        AUDIT.append((event, str(args[0])))


sys.addaudithook(_audit)  # hooks cannot be removed: it records only while AUDIT is a list


def test_loading_never_unpickles(tmp_path, tokenizer):
    """Python's audit events see every file Python opens and every global a pickle would load, whatever
    API does it (torch.load, pickle, numpy): loading a checkpoint opens only its JSON and safetensors
    (safetensors reads those without pickle), and unpickles nothing."""
    global AUDIT
    save(tmp_path / "ckpt", small_model(tokenizer), tokenizer)
    torch.save({"a": torch.zeros(1)}, tmp_path / "ckpt" / "pytorch_model.bin")  # a pickle it must leave alone
    AUDIT = []
    try:
        load_model(tmp_path / "ckpt")
        events = AUDIT
    finally:
        AUDIT = None
    assert not [e for e in events if e[0] == "pickle.find_class"], events
    opened = {Path(p).name for e, p in events if e == "open" and str(tmp_path) in p}
    assert opened and all(name.endswith((".json", ".safetensors")) for name in opened), opened


def test_a_run_folder_loads_its_best_checkpoint_else_its_last(tmp_path, tokenizer):
    run = tmp_path / "runs" / "fish"
    save(run / "ckpt" / "last", small_model(tokenizer), tokenizer, step=20)
    assert load_model(run)[2]["step"] == 20
    save(run / "ckpt" / "best", small_model(tokenizer), tokenizer, step=10)
    assert load_model(run)[2]["step"] == 10


def test_an_exception_mid_save_leaves_the_previous_checkpoint_loadable(tmp_path, tokenizer):
    folder = save(tmp_path / "ckpt", small_model(tokenizer, seed=0), tokenizer, step=1)

    class BrokenTokenizer:  # writes half of its files, then fails (as a full disk or Ctrl-C would)
        def fingerprint(self):
            return tokenizer.fingerprint()

        def save(self, where):
            (Path(where) / "tokenizer.json").write_text("{half")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(folder, model=small_model(tokenizer, seed=1), tokenizer=BrokenTokenizer(),
                        meta={"model": {}, "step": 2})
    model, _, meta = load_model(folder)
    assert meta["step"] == 1
    assert torch.equal(model.transformer.wte.weight, small_model(tokenizer, seed=0).transformer.wte.weight)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"], "no temporary folder left behind"


def test_no_checkpoint_says_to_train(tmp_path):
    with pytest.raises(GuppyError, match=r"no trained model in .*runs/otter; run `guppy train otter`"):
        load_model(tmp_path / "runs" / "otter")


def test_a_tokenizer_from_another_run_is_refused(tmp_path, tokenizer):
    from guppy.model.tokenizer import train_tokenizer

    folder = save(tmp_path / "ckpt", small_model(tokenizer), tokenizer)
    other = train_tokenizer(["completely different text about cats and naps"] * 40, vocab_size=300)
    other.save(folder)  # overwrites the checkpoint's tokenizer files
    with pytest.raises(GuppyError, match=r"ckpt: its tokenizer is not the one the model was trained with"):
        load_model(folder)


@pytest.mark.parametrize("damage", ["flip a byte", "truncate"])
def test_corrupted_weights_are_refused(tmp_path, tokenizer, damage):
    folder = save(tmp_path / "ckpt", small_model(tokenizer), tokenizer)
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    if damage == "flip a byte":
        data[-10] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))
    with pytest.raises(GuppyError, match=r"model\.safetensors: missing or corrupted"):
        load_model(folder)


def test_corrupted_config_is_refused(tmp_path, tokenizer):
    folder = save(tmp_path / "ckpt", small_model(tokenizer), tokenizer)
    (folder / "config.json").write_text((folder / "config.json").read_text()[:40])
    with pytest.raises(GuppyError, match=r"config\.json: unreadable or incomplete"):
        load_model(folder)


def test_weights_of_another_shape_are_refused(tmp_path, tokenizer):
    folder = save(tmp_path / "ckpt", small_model(tokenizer), tokenizer)
    meta = json.loads((folder / "config.json").read_text())
    meta["model"]["d_ff"] = 128  # config and weights disagree
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(GuppyError, match=r"model\.safetensors: cannot be loaded into the model of config\.json"):
        load_model(folder)


def test_a_checkpoint_folder_copied_elsewhere_still_loads(tmp_path, tokenizer):
    folder = save(tmp_path / "ckpt", small_model(tokenizer), tokenizer)
    moved = shutil.copytree(folder, tmp_path / "elsewhere" / "model")
    assert load_model(moved)[1].fingerprint() == tokenizer.fingerprint()


def test_a_checkpoint_written_in_the_background_holds_the_state_it_was_asked_for(tmp_path, tokenizer):
    """The trainer goes on stepping while CheckpointWriter writes: the weights and moments it saves are the ones
    of the step it was asked at, though they change in place right after (as the next optimizer step does)."""
    model, moments = small_model(tokenizer), {"optim.0.exp_avg": torch.ones(3)}
    info = {"step": 1, "best_step": 1, "steps_logged": 0, "best_loss": 2.5, "loss_sum": 0.0}
    want = {k: v.clone() for k, v in model.state_dict().items()}
    with CheckpointWriter() as writer:
        writer.save(tmp_path / "ckpt", model=model, tokenizer=tokenizer, meta={"step": 1},
                    state=(moments, info))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        moments["optim.0.exp_avg"].mul_(7)
    loaded, _, meta = load_model(tmp_path / "ckpt")
    assert meta["step"] == 1 and all(torch.equal(loaded.state_dict()[k], v) for k, v in want.items())
    tensors, saved = load_trainer_state(tmp_path / "ckpt")
    assert torch.equal(tensors["optim.0.exp_avg"], torch.ones(3)) and saved == info


def test_a_failed_background_write_is_raised_when_the_writer_is_left(tmp_path, tokenizer):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(GuppyError, match="cannot write here"):
        with CheckpointWriter() as writer:
            writer.save(tmp_path / "file" / "ckpt", model=small_model(tokenizer), tokenizer=tokenizer, meta={})

"""The trainer's speed-ups made for the GPU, checked on a CPU (CI has no GPU; tests/test_cuda.py runs them on one):
Muon's batched Newton-Schulz (guppy/train/optim.py), the cache of prepared data (guppy/train/prepared.py), the
next epoch packed while this one trains (guppy/train/batches.py), the blocks' fixed LayerNorms and biases and the
bf16 residual stream (guppy/model/gpt.py), and the step a GPU captures as a CUDA graph (guppy/train/captured.py),
run in the open."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import guppy.train.trainer as trainer_module
from guppy.train.optim import Muon
from guppy.store.dataset_cache import cache_root
from guppy.train.trainer import train
from guppy.data.reader import Tokenized, epoch_order, pack
from guppy.train.batches import Batches
from guppy.train.processes import Processes
from tests.test_train import FAST, STEPS, assert_same_run, interrupt, losses, resolve_config, weights
from tests.test_train import corpus, micro_preset  # noqa: F401 (fixtures)
from tests.conftest import weights_differ_by


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


def test_the_epoch_packed_in_the_background_is_the_epoch_packed_in_place():
    """Stream packing packs each epoch afresh; the next one is packed in a thread while this one trains. Every
    step of four epochs must get the rows (and learned-token counts) that packing that epoch in place gives."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 40, size=300)
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = rng.integers(0, 50, size=int(starts[-1])).astype(np.int64)
    data = Tokenized(ids=ids, learn=rng.random(len(ids)) < 0.5, starts=starts)
    cfg = resolve_config("tiny", packing="stream", batch_size=16, context=32, max_steps=100, device="cpu", seed=3)
    batches = Batches(data, context=32, cfg=cfg, procs=Processes("cpu"), pad_id=0)
    per_epoch = batches.steps_per_epoch
    assert 3 * per_epoch < cfg.max_steps  # four epochs: three packed in the background
    for step in range(4 * per_epoch):
        epoch, b = divmod(step, per_epoch)
        if b == 0:
            x_ref, y_ref = pack(data, context=32, order=epoch_order(len(data), seed=3, epoch=epoch))
        x, y, learned = batches(step)
        rows = slice(b * 16, (b + 1) * 16)
        assert torch.equal(x[0], x_ref[rows]) and torch.equal(y[0], y_ref[rows])
        assert learned == int((y_ref[rows] != -1).sum())
    assert batches.next is not None and batches.next[0] == 4  # packed ahead, not in place
    assert not torch.equal(batches(0)[0], batches(per_epoch)[0])  # epochs differ (not vacuous)


FIXED = dict(learn_block_norms=False, learn_block_biases=False)  # as the guppy preset trains


def is_fixed(name: str) -> bool:
    """The blocks' LayerNorms (ln_1, ln_2) and the biases of their Linears."""
    return ".h." in name and (".ln_1." in name or ".ln_2." in name or name.endswith(("c_attn.bias", "c_proj.bias",
                                                                                       "c_fc.bias")))


def test_fixed_block_norms_and_biases_stay_where_they_start_while_the_model_learns(tmp_path, corpus):
    """--no-learn-block-norms --no-learn-block-biases: the LayerNorms before attention and MLP keep gain 1 and bias
    0, the blocks' Linear biases 0 (no gradient, no optimizer state); ln_f, the Linears' weights and the embeddings
    still learn, the loss falls and the run resumes exactly."""
    run, cpu = tmp_path / "fixed", {**FAST, "device": "cpu"}  # as the interrupted run (a GPU machine would pick cuda)
    train(persona="fish", data=corpus, out=run, max_steps=STEPS, **FIXED, **cpu)
    w = weights(run)
    assert sum(map(is_fixed, w)) == 2 * 2 * 2 + 2 * 4  # 2 blocks: 2 norms of 2 tensors, 4 biases (not vacuous)
    for name, value in w.items():
        if is_fixed(name):
            assert torch.equal(value, torch.ones_like(value) if name.endswith("weight") else torch.zeros_like(value))
    for moved in ("transformer.ln_f.weight", "transformer.ln_f.bias"):
        assert not torch.equal(w[moved], torch.ones_like(w[moved]) if moved.endswith("weight") else w[moved] * 0)
    curve = losses(run)
    assert curve[-1] < 0.7 * curve[0]
    learned = tmp_path / "learned"
    train(persona="fish", data=corpus, out=learned, max_steps=STEPS, **cpu)
    for name in ("transformer.h.0.ln_1.weight", "transformer.h.0.mlp.c_fc.bias", "transformer.h.1.attn.c_attn.bias"):
        assert not torch.equal(weights(learned)[name], w[name])
    # Killed at step 47 and resumed from step 40's checkpoint (whose optimizer state has no entry for the fixed
    # tensors): the same run as the one never stopped.
    assert interrupt(tmp_path, corpus, at=47, signal="SIGKILL", **FIXED).returncode == -9
    train(persona="fish", data=corpus, out=tmp_path / "fish", max_steps=STEPS, resume=True, **FIXED, **cpu)
    assert_same_run(tmp_path / "fish", run)


def test_the_model_freezes_each_kind_of_block_tensor_alone():
    from guppy.model.gpt import GPT, ModelConfig

    def frozen(**which) -> set[str]:
        model = GPT(ModelConfig(vocab_size=60, context=16, n_layer=2, n_head=2, d_model=32, d_ff=64))
        model.freeze(**which)
        return {name for name, p in model.named_parameters() if not p.requires_grad}

    norms, biases = frozen(block_norms=True), frozen(block_biases=True)
    assert frozen() == set() and norms | biases == frozen(block_norms=True, block_biases=True)
    assert norms == {n for n in norms if ".ln_" in n} and len(norms) == 8
    assert biases == {n for n in biases if n.endswith(".bias") and ".ln_" not in n} and len(biases) == 8


def bf16_residual_model(residual: bool):
    from guppy.model.gpt import GPT, ModelConfig

    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=60, context=16, n_layer=2, n_head=2, d_model=32, d_ff=64))
    model.residual_dtype = torch.bfloat16 if residual else None
    return model


def test_a_bf16_residual_stream_under_autocast_computes_what_the_fp32_one_does():
    """GPU runs carry the residual stream in bf16 under autocast (--bf16-residual): the blocks read and write bf16,
    their LayerNorms answer in bf16 with no cast around them, and the logits are the fp32 stream's up to bf16's
    rounding. Outside autocast (CPU training, exports) the setting changes nothing. CPU autocast, same code."""
    x = torch.randint(0, 60, (4, 16))
    y = x.roll(-1, dims=1)
    fp32, bf16 = bf16_residual_model(False), bf16_residual_model(True)
    seen = []
    for block in bf16.transformer.h:
        block.register_forward_hook(lambda module, args, out: seen.append((args[0].dtype, out.dtype)))
    bf16.transformer.h[0].ln_2.register_forward_hook(lambda module, args, out: seen.append((args[0].dtype, out.dtype)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference, _ = fp32(x)
        logits, loss = bf16(x, y, positions=x.numel())
    assert seen == [(torch.bfloat16, torch.bfloat16)] * 3
    assert (logits.float() - reference.float().flatten(0, 1)).abs().max().item() < 0.05  # every position, in order
    assert logits.float().std().item() > 0.1  # not vacuous: logits of a size that rounding would show in
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in bf16.parameters())
    assert torch.equal(bf16(x)[0], fp32(x)[0])  # no autocast: the fp32 stream


def test_a_model_with_a_bf16_residual_stream_learns_as_the_fp32_one():
    """A few hundred AdamW steps on rows whose next token is fixed by the one before, under CPU autocast: the bf16
    stream learns the rule as the fp32 one does (the gradients through its casts and norms are right)."""
    torch.manual_seed(1)
    x = torch.randint(0, 60, (16, 16))
    x[:, 1::2] = (x[:, 0::2] * 7 + 3) % 60  # every odd position follows from the one before
    y = torch.full_like(x, -1)
    y[:, 0::2] = x[:, 1::2]
    final = {}
    for residual in (False, True):
        model = bf16_residual_model(residual)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        for _ in range(150):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                _, loss = model(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad()
        final[residual] = loss.item()
    assert final[True] < 0.1 * math.log(60) and final[False] < 0.1 * math.log(60)
    assert final[True] == pytest.approx(final[False], abs=0.1)


@pytest.mark.parametrize("room", [0, 5, "every position"])
def test_the_loss_at_a_fixed_number_of_positions_is_the_loss_over_the_targets(room):
    """A CUDA graph needs shapes that do not depend on the targets: the loss at a fixed number of positions (every
    one with a target, then some without, -1 ignored) is the loss over the positions that have one, gradients too."""
    from guppy.model.gpt import GPT, ModelConfig

    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=60, context=16, n_layer=2, n_head=2, d_model=32, d_ff=64))
    x = torch.randint(0, 60, (4, 16))
    y = x.masked_fill(torch.rand(x.shape) < 0.5, -1)
    n = int((y != -1).sum())
    grads, losses_ = [], []
    for positions in (None, x.numel() if room == "every position" else n + room):
        model.zero_grad()
        logits, loss = model(x, y, reduction="sum", positions=positions)
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        losses_.append(loss.item())
        assert logits.shape == (n if positions is None else positions, 60)
    assert 0 < n < x.numel() - 5  # not vacuous: some positions without a target, some with
    assert losses_[1] == pytest.approx(losses_[0], rel=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (there: 2 steps in the open, a capture, a replay, and a "
                                          "batch with more targets than the room, in the open after the capture)"))])
def test_a_step_for_a_cuda_graph_run_in_the_open_is_the_trainers_step(device):
    """guppy/train/captured.py's step, with its learning rate and loss scale in tensors and its loss at a fixed
    number of positions, moves the weights as the trainer's step does (same optimizers, Muon batched as on a GPU),
    and adds the same losses to the log's sum; the learning rate set between steps reaches both optimizers."""
    from contextlib import nullcontext

    from guppy.model.gpt import GPT, ModelConfig
    from guppy.train.captured import CapturedSteps
    from guppy.train.optim import Optimizers, set_lr

    def model_and_optimizers():
        torch.manual_seed(0)
        model = GPT(ModelConfig(vocab_size=60, context=32, n_layer=2, n_head=2, d_model=32, d_ff=64)).to(device)
        hidden = {id(p) for p in model.hidden_matrices()}
        muon = Muon([p for p in model.parameters() if id(p) in hidden], lr=0.02, weight_decay=0.1,
                    adjust_lr_fn="match_rms_adamw", batched=True)
        adamw = torch.optim.AdamW([p for p in model.parameters() if id(p) not in hidden], lr=0.02, foreach=False,
                                  capturable=device == "cuda")
        return model, Optimizers(muon, adamw)

    torch.manual_seed(1)
    batches = [torch.randint(0, 60, (8, 32)) for _ in range(5)]
    targets = [b.masked_fill(torch.rand(b.shape) < 0.4, -1) for b in batches[:4]] + [batches[4]]
    batches, targets = [b.to(device) for b in batches], [t.to(device) for t in targets]
    lrs = [0.02, 0.01, 0.005, 0.0, 0.003]
    (model, optimizer), (theirs, their_optimizer) = model_and_optimizers(), model_and_optimizers()
    logged, their_logged = torch.zeros((), device=device), torch.zeros((), device=device)
    steps = CapturedSteps(theirs, their_optimizer, autocast=nullcontext(), grad_clip=1.0, loss_sum=their_logged)
    for x, y, lr in zip(batches, targets, lrs):
        n = int((y != -1).sum())
        set_lr(optimizer, lr)
        _, loss = model(x, y, reduction="sum")
        loss = loss / n
        loss.backward()
        logged += loss.detach()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        set_lr(their_optimizer, lr)
        steps(x, y, n)
        if steps.taken == 1:  # the first batch sets the positions the logits are taken at: room for its targets
            assert n <= steps.positions < batches[0].numel()
    # the last batch has a target at every position, more than that room: it takes them all (in the open on a GPU)
    assert n == batches[-1].numel() > steps.positions
    assert all(isinstance(g["lr"], torch.Tensor) and g["lr"].item() == pytest.approx(0.003)
               for g in their_optimizer.param_groups)
    assert their_logged.item() == pytest.approx(logged.item(), rel=1e-5)
    start = model_and_optimizers()[0].state_dict()
    assert max((model.state_dict()[k] - start[k]).abs().max().item() for k in start) > 0.01  # the weights moved
    assert weights_differ_by(theirs.state_dict(), model.state_dict()) < 1e-4  # summed in another order, no more

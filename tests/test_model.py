"""The model: its attention is the textbook one, its cache and padding change nothing, its
weights are GPT-2's, and it can learn a persona's word."""

from __future__ import annotations

import pydantic
import pytest
import torch

from guppy.config import ModelConfig, resolve_config
from guppy.errors import GuppyError
from guppy.model.gpt import GPT
from guppy.train.optim import build_optimizer

TINY = dict(vocab_size=64, context=32, n_layer=2, n_head=4, d_model=32, d_ff=64)


def tiny_model(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(**{**TINY, **overrides})).eval()


def use_reference_attention(model: GPT, on: bool) -> None:
    for block in model.transformer.h:
        block.attn.reference = on


def logits_of(model, idx, **kwargs):
    with torch.no_grad():
        return model(idx, **kwargs)[0]


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_reference_attention_matches_fused_attention(activation):
    model = tiny_model(activation=activation)
    idx = torch.randint(0, 64, (3, 20))
    pad_mask = torch.ones(3, 20, dtype=torch.bool)
    pad_mask[1, :5] = False
    fused = [logits_of(model, idx), logits_of(model, idx, pad_mask=pad_mask)]
    use_reference_attention(model, True)
    reference = [logits_of(model, idx), logits_of(model, idx, pad_mask=pad_mask)]
    for f, r in zip(fused, reference):
        torch.testing.assert_close(f, r, atol=1e-5, rtol=1e-5)


def cached_logits(model, idx, chunks, pad_mask=None, whole=False):
    """Feed idx through a KV cache in pieces of the given sizes; the logits of every position."""
    cache, out, start = model.new_kv_cache(idx.size(0), whole=whole), [], 0
    for n in chunks:
        mask = pad_mask[:, start:start + n] if pad_mask is not None else None
        out.append(logits_of(model, idx[:, start:start + n], kv_cache=cache, pad_mask=mask))
        start += n
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("whole", [False, True])
def test_kv_cache_gives_the_same_logits_as_a_full_forward(reference, whole):
    """whole: attention reads every slot of the cache, the empty ones masked, as a captured GPU step does."""
    model = tiny_model()
    use_reference_attention(model, reference)
    idx = torch.randint(0, 64, (2, 16))
    torch.testing.assert_close(cached_logits(model, idx, [10] + [1] * 6, whole=whole), logits_of(model, idx),
                               atol=1e-5, rtol=1e-5)


def test_reference_attention_matches_fused_attention_with_kv_cache_and_padding():
    model = tiny_model()
    idx = torch.randint(0, 64, (2, 16))
    pad_mask = torch.ones(2, 16, dtype=torch.bool)
    pad_mask[0, :4] = False
    fused = cached_logits(model, idx, [8, 1, 1, 6], pad_mask)
    torch.testing.assert_close(cached_logits(model, idx, [8, 1, 1, 6], pad_mask, whole=True), fused, atol=1e-5,
                               rtol=1e-5)
    use_reference_attention(model, True)
    torch.testing.assert_close(cached_logits(model, idx, [8, 1, 1, 6], pad_mask), fused, atol=1e-5, rtol=1e-5)


def test_left_padding_changes_no_logits():
    model = tiny_model()
    prompt = torch.randint(1, 64, (1, 9))
    padded = torch.cat([torch.zeros(1, 5, dtype=torch.long), prompt], dim=1)
    pad_mask = torch.tensor([[False] * 5 + [True] * 9])
    alone = logits_of(model, prompt)
    torch.testing.assert_close(logits_of(model, padded, pad_mask=pad_mask)[:, 5:], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached_logits(model, padded, [14], pad_mask)[:, 5:], alone, atol=1e-5, rtol=1e-5)


def test_lm_head_is_tied_to_token_embedding():
    model = tiny_model()
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.num_params() == sum(p.numel() for n, p in model.state_dict().items() if n != "lm_head.weight")


def test_guppy_preset_has_8_7M_parameters_at_vocab_4096():
    model = GPT(resolve_config("guppy").shape(vocab_size=4096))
    assert model.num_params() == 8_726_016  # the reference GuppyLM's 8.7M
    assert model.flops_per_token() == 6 * (8_726_016 - 128 * 384) + 12 * 6 * 384 * 128


def test_unknown_preset_is_a_user_error():
    with pytest.raises(GuppyError, match="unknown preset 'huge'; choose one of: tiny, small, guppy"):
        resolve_config("huge")


def test_config_refuses_unknown_fields_and_heads_that_do_not_divide_width():
    with pytest.raises(pydantic.ValidationError, match="extra"):
        ModelConfig(**TINY, n_embd=3)
    with pytest.raises(pydantic.ValidationError, match="multiple of n_head"):
        ModelConfig(**{**TINY, "n_head": 5})


def test_loss_is_mean_cross_entropy_over_targets_that_are_not_minus_one():
    model = tiny_model()
    idx = torch.randint(0, 64, (2, 8))
    targets = torch.randint(0, 64, (2, 8))
    targets[0, :3] = -1
    targets[1, 5:] = -1
    logits, loss = model(idx, targets)
    keep = targets != -1
    every = logits_of(model, idx)  # (B, T, vocab): without targets, logits at every position
    torch.testing.assert_close(logits, every[keep])  # with them, only where there is a target
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(every[keep], targets[keep]))
    _, total = model(idx, targets, reduction="sum")
    torch.testing.assert_close(total, loss * keep.sum())
    _, nothing = model(idx, torch.full_like(targets, -1), reduction="sum")
    assert nothing.item() == 0.0  # a batch with nothing to learn adds nothing (and no NaN)


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest():
    model = tiny_model()
    muon, adamw = build_optimizer(model, name="muon", lr=1e-3, weight_decay=0.1, betas=(0.9, 0.99),
                                  device_type="cpu").optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)  # guppy's Muon is torch's
    hidden = {id(p) for p in muon.param_groups[0]["params"]}
    assert hidden == {id(p) for n, p in model.named_parameters() if n.startswith("transformer.h.") and p.dim() == 2}
    embeddings, vectors = adamw.param_groups
    assert model.transformer.wte.weight in embeddings["params"] and embeddings["weight_decay"] == 0.1
    assert vectors["weight_decay"] == 0.0 and all(p.dim() == 1 for p in vectors["params"])
    everything = [p for opt in (muon, adamw) for g in opt.param_groups for p in g["params"]]
    assert sum(p.numel() for p in everything) == model.num_params()  # each parameter exactly once
    # float32 Newton-Schulz one matrix at a time off CUDA; on CUDA torch's bfloat16, batched by shape
    from guppy.train.optim import Muon

    assert type(muon) is Muon and not muon.batched
    on_gpu = build_optimizer(model, name="muon", lr=1e-3, weight_decay=0.1, betas=(0.9, 0.99), device_type="cuda")
    assert type(on_gpu.optimizers[0]) is Muon and on_gpu.optimizers[0].batched


def test_cpu_muon_is_torchs_muon_with_float32_newton_schulz():
    from guppy.train.optim import Muon, orthogonalize

    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(96, 32) * 0.02), torch.nn.Parameter(torch.randn(32, 32) * 0.02)]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    start = [p.detach().clone() for p in ours]
    options = dict(lr=1e-2, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    a, b = Muon(ours, **options), torch.optim.Muon(theirs, **options)
    for _ in range(3):  # momentum, Nesterov, decay and the lr rule all take part
        for p, q in zip(ours, theirs):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        a.step()
        b.step()
    for p, q, p0 in zip(ours, theirs, start):  # the same steps, up to torch's bfloat16 rounding
        assert (p - q).norm() < 0.02 * (q - p0).norm(), ((p - q).norm() / (q - p0).norm()).item()
    assert a.state_dict()["state"].keys() == b.state_dict()["state"].keys()
    assert a.state[ours[0]].keys() == b.state[theirs[0]].keys() == {"momentum_buffer"}  # one checkpoint format
    x = orthogonalize(torch.randn(96, 32, dtype=torch.bfloat16), (3.4445, -4.7750, 2.0315), 5, 1e-7)
    singular = torch.linalg.svdvals(x)
    assert x.dtype == torch.float32 and x.shape == (96, 32) and 0.5 < singular.min() and singular.max() < 1.5


def test_adamw_alone_decays_matrices_only():
    model = tiny_model()
    (opt,) = build_optimizer(model, name="adamw", lr=1e-3, weight_decay=0.1, betas=(0.9, 0.99),
                             device_type="cpu").optimizers
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() >= 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == model.num_params()


def test_residual_projections_start_smaller():
    model = GPT(resolve_config("guppy").shape(vocab_size=4096))
    std = model.transformer.h[0].mlp.c_proj.weight.std().item()
    assert abs(std - 0.02 / (2 * 6) ** 0.5) < 0.001
    assert abs(model.transformer.h[0].mlp.c_fc.weight.std().item() - 0.02) < 0.001


@pytest.mark.parametrize("activation,hf_activation", [("relu", "relu"), ("gelu", "gelu_new")])
def test_weights_map_one_to_one_onto_transformers_gpt2(activation, hf_activation):
    transformers = pytest.importorskip("transformers")
    model = tiny_model(activation=activation)
    c = model.config
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.context, n_embd=c.d_model, n_layer=c.n_layer,
        n_head=c.n_head, n_inner=c.d_ff, activation_function=hf_activation, layer_norm_epsilon=1e-5,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).eval()
    ours = model.state_dict()
    # GPT-2's Conv1D keeps Linear weights transposed; every other tensor is the same by name.
    theirs = {name: ours[name].t() if name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight"))
              else ours[name] for name in hf.state_dict()}
    hf.load_state_dict(theirs)
    idx = torch.randint(0, 64, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, logits_of(model, idx), atol=1e-4, rtol=1e-4)


def test_tiny_model_learns_what_it_loves():
    from guppy.model.tokenizer import train_tokenizer

    chats = [
        [{"role": "user", "content": "what do you love"}, {"role": "assistant", "content": "food. i love food."}],
        [{"role": "user", "content": "where do you live"}, {"role": "assistant", "content": "in a tank. it is wet."}],
        [{"role": "user", "content": "how are you"}, {"role": "assistant", "content": "i am a happy fish."}],
    ]
    tok = train_tokenizer([m["content"] for c in chats for m in c] * 5, vocab_size=300)
    rows = [tok.encode_chat(c) for c in chats]
    width = max(len(ids) for ids, _ in rows)
    x = torch.tensor([ids[:-1] + [tok.pad_id] * (width - len(ids)) for ids, _ in rows])
    y = torch.tensor([[t if m else -1 for t, m in zip(ids[1:], mask[1:])] + [-1] * (width - len(ids))
                      for ids, mask in rows])
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, context=32, n_layer=2, n_head=2, d_model=64, d_ff=128))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1

    model.eval()
    food = tok.encode("food")[0]
    for question, loves_food in [("what do you love", True), ("where do you live", False)]:
        prompt = torch.tensor([tok.encode_prompt([{"role": "user", "content": question}])])
        next_token = logits_of(model, prompt)[0, -1].argmax().item()
        assert (next_token == food) == loves_food, tok.decode([next_token])

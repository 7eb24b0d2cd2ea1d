"""The model: a vanilla GPT-2-style decoder, small enough to read in one sitting.

Learned positions, pre-LayerNorm blocks, multi-head causal attention, a ReLU/GELU MLP and an
LM head tied to the token embedding. Module and parameter names are GPT-2's (`transformer.wte`,
`h.0.attn.c_attn`, `ln_f`, ...) so a checkpoint maps one to one onto Hugging Face's
`GPT2LMHeadModel`; GPT-2 stores its Linear weights transposed (Conv1D), which the exporter undoes.

Read top to bottom: config, attention, MLP, block, model, KV cache.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn import functional as F

from guppy.config import ModelConfig  # noqa: F401 (the shape, with the vocabulary: guppy/config.py)


def reference_attention(q, k, v, mask=None, dropout_p=0.0, steps=None):
    """Attention in its four lines; the fast path must agree with it (tests/test_model.py).

    q (B, nh, T, hs), k and v (B, nh, S, hs): the T queries are the last T of the S keys.
    mask (B, 1, T, S) bool, True where a query may look; None means plainly causal.
    steps: a list to append the four steps to, as a dict of (B, nh, T, S) tensors (guppy inspect)."""
    if mask is None:
        T, S = q.size(-2), k.size(-2)
        mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=S - T)
    scores = q @ k.transpose(-2, -1)  # (B, nh, T, S)
    scaled = scores * (1.0 / math.sqrt(k.size(-1)))
    masked = scaled.masked_fill(~mask, float("-inf"))
    att = F.softmax(masked, dim=-1)
    if steps is not None:
        steps.append(dict(scores=scores, scaled=scaled, masked=masked, probs=att))
    att = F.dropout(att, dropout_p) if dropout_p else att  # where SDPA drops too: the weights
    return att @ v  # (B, nh, T, hs)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.n_head, self.d_model, self.layer = config.n_head, config.d_model, layer
        self.c_attn = nn.Linear(config.d_model, 3 * config.d_model)  # q, k, v in one matmul, as in GPT-2
        self.c_proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        self.reference = False  # True: use the four readable lines instead of the fused kernel
        self.steps: list | None = None  # with reference: each call's four steps are appended here

    def forward(self, x, mask=None, kv_cache=None):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.d_model, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if kv_cache is not None:
            k, v = kv_cache.store(self.layer, k, v)  # (B, nh, S, hs): everything so far
        p = self.dropout if self.training else 0.0
        if self.reference:
            y = reference_attention(q, k, v, mask, dropout_p=p, steps=self.steps)
        else:
            # is_causal aligns its triangle top-left, right only when queries and keys are the same
            # tokens; with a cache prefix or padding the caller passes an explicit mask instead.
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=mask is None)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.d_model, config.d_ff)
        # GPT-2's "gelu_new" is the tanh approximation; using it keeps the export exact.
        self.act = nn.ReLU() if config.activation == "relu" else nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(config.d_ff, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm that answers in its input's dtype. Under autocast torch normalizes in fp32 and returns fp32:
    with the residual stream in bf16 (GPT.residual_dtype) that is a cast in and a cast out around every norm.
    The bf16 kernel reads and writes half the bytes and still sums in fp32."""

    def forward(self, x):
        if x.dtype == torch.float32 or not torch.is_autocast_enabled(x.device.type):
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return F.layer_norm(x, self.normalized_shape, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


class Block(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.ln_1 = LayerNorm(config.d_model, eps=1e-5)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = LayerNorm(config.d_model, eps=1e-5)
        self.mlp = MLP(config)

    def forward(self, x, mask=None, kv_cache=None):
        x = x + self.attn(self.ln_1(x), mask, kv_cache)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    # None: the residual stream is fp32, as the weights (autocast casts each matmul's inputs to bf16 and its output
    # stays bf16). torch.bfloat16: under autocast it is carried in bf16 from the embeddings on (set by the trainer,
    # guppy/train/trainer.py): every add and norm moves half the bytes, and the casts around them go.
    residual_dtype: torch.dtype | None = None

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.d_model),
            wpe=nn.Embedding(config.context, config.d_model),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
            ln_f=LayerNorm(config.d_model, eps=1e-5),
        ))
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        # Weight tying (Press & Wolf 2017): one matrix reads and writes tokens. At the guppy shape
        # it saves 1.6M of 10.3M parameters, and GPT-2 does the same.
        self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # GPT-2: scale the projections that write into the residual stream by 1/sqrt(2 * n_layer),
        # since 2 of them per block add up along the depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None, *, kv_cache=None, pad_mask=None, last_only=False, reduction="mean",
                positions=None):
        """idx (B, T) token ids -> (logits, loss or None).

        logits: (B, T, vocab), or (B, 1, vocab) with last_only; with targets, (N, vocab) for just
            the N positions that have a target, in order.
        targets (B, T): the next token at each position, -1 where nothing is to be learned.
        reduction: "mean" (per target) or "sum" of the cross-entropy over the targets.
        kv_cache: from `new_kv_cache`; idx are then the tokens that follow what it holds.
        pad_mask (B, T) bool: False on left-padding, which nothing attends to and which does
            not count as a position, so a padded prompt gives the same logits as alone.
        last_only: compute logits for the last position only (sampling needs no more).
        positions: with targets, logits (positions, vocab) at every position that has a target, in order, then
            at positions that have none (-1, ignored by the loss) to fill up: no shape depends on the targets, as a
            CUDA graph needs (guppy/train/captured.py). It must be at least the targets' count, which is not checked
            (that would wait for the GPU)."""
        B, T = idx.size()
        start = kv_cache.length if kv_cache is not None else 0
        assert start + T <= self.config.context, f"{start + T} tokens > context {self.config.context}"
        if kv_cache is None and pad_mask is None:  # training: every row starts at position 0
            pos, mask = torch.arange(T, device=idx.device), None  # None: SDPA builds the causal mask itself
        else:
            real = torch.ones_like(idx, dtype=torch.bool) if pad_mask is None else pad_mask  # (B, T)
            seen = kv_cache.seen[:, None] if kv_cache is not None else 0  # real tokens before idx, per row
            pos = (seen + real.cumsum(dim=1) - 1).clamp(min=0)  # (B, T): padding is not a position
            if kv_cache is None:
                mask = attention_mask(real, torch.arange(T, device=idx.device))
            else:
                mask = attention_mask(kv_cache.remember(real), kv_cache.slots)

        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        if self.residual_dtype is not None and torch.is_autocast_enabled(x.device.type):
            x = x.to(self.residual_dtype)
        for block in self.transformer.h:
            x = block(x, mask, kv_cache)
        x = self.transformer.ln_f(x)
        if kv_cache is not None:
            kv_cache.advance(real)

        if targets is not None and positions is not None:
            # A stable sort of "has no target" puts the positions that have one first, in order.
            at = torch.argsort((targets.flatten() == -1).to(torch.uint8), stable=True)[:positions]
            logits = self.lm_head(x.flatten(0, 1).index_select(0, at))
            return logits, F.cross_entropy(logits, targets.flatten()[at], ignore_index=-1, reduction=reduction)
        if targets is not None:
            # Only positions with a target need logits. About half of a packed chat row is the
            # user's turn (-1): leaving those out of the largest matmul and the softmax makes
            # training 1.2x faster on a 2-core CPU. (Finding them waits for the GPU, which a captured
            # step cannot do: it passes `positions`.)
            keep = targets != -1
            logits = self.lm_head(x[keep])  # (N, vocab)
            return logits, F.cross_entropy(logits, targets[keep], reduction=reduction)
        logits = self.lm_head(x[:, -1:, :] if last_only else x)  # (B, 1 or T, vocab)
        return logits, None

    def new_kv_cache(self, batch_size: int, length: int | None = None, *, whole: bool = False) -> "KVCache":
        """An empty cache for `batch_size` sequences of at most `length` tokens (default: context)."""
        p = self.lm_head.weight
        return KVCache(self.config, batch_size, length or self.config.context, device=p.device, dtype=p.dtype,
                       whole=whole)

    def num_params(self) -> int:
        """Every parameter once: the tied head is wte, so it is not counted twice."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self) -> int:
        """Training FLOPs (forward + backward) per token, as in PaLM appendix B and nanoGPT:
        6 per weight that multiplies (2 forward, 4 backward), plus the attention scores and
        mixing at full context. Position embeddings are a lookup, not a matmul, so they are left out."""
        c = self.config
        n = self.num_params() - self.transformer.wpe.weight.numel()
        return 6 * n + 12 * c.n_layer * c.d_model * c.context

    def freeze(self, *, block_norms: bool = False, block_biases: bool = False) -> None:
        """Keep some of the blocks' parameters where they start; what goes is their gradients, each a sum over every
        token of the batch, which cost more than they are worth on a GPU (GPU_NOTES.md). They stay in the model, so
        checkpoints and exports keep GPT-2's tensors.

        block_norms: the LayerNorms before attention and MLP at gain 1 and bias 0 (ln_f still learns). The Linear
            each feeds can learn any gain and bias itself, W (g * x + b) = (W diag(g)) x + W b, so the model can say
            the same things (an H200 step at the guppy shape: 23.7 -> 21.0 ms).
        block_biases: the biases of the blocks' Linears at 0, as LLaMA's Linears have none."""
        for block in self.transformer.h:
            if block_norms:
                block.ln_1.requires_grad_(False)
                block.ln_2.requires_grad_(False)
            if block_biases:
                for linear in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
                    linear.bias.requires_grad_(False)

    def hidden_matrices(self) -> list[nn.Parameter]:
        """The blocks' 2-D weights (attention and MLP): what Muon orthogonalizes. The embeddings,
        which are also the tied head, and the 1-D gains and biases are left to AdamW (guppy/train/optim.py)."""
        return [p for name, p in self.named_parameters() if p.dim() == 2 and name.startswith("transformer.h.")]


def attention_mask(key_ok, slots):
    """(B, 1, T, S) bool, True where a query may attend a key, for T queries in key slots `slots` (T,) of S:
    causal, never into padding or an empty slot (key_ok (B, S) False), and always to itself, so that a
    padding query's row is never all -inf (softmax would make NaN and spread it)."""
    q = slots[:, None]  # (T, 1) query slots
    k = torch.arange(key_ok.size(1), device=key_ok.device)[None, :]  # (1, S) key slots
    return ((k <= q) & key_ok[:, None, None, :]) | (k == q)


class KVCache:
    """Keys and values of every layer for the tokens seen so far, allocated once.

    Generation feeds one token per row per step; without the cache each step would recompute
    the keys and values of the whole prefix. Slots are shared by the batch: a left-padded row
    fills its first slots with padding, which `valid` marks so that attention skips them.

    Where the next tokens go is also kept on the device (`at`), so that a step changes no shape and
    reads nothing back: with `whole`, attention reads every slot (the empty ones are not valid), and
    a step can be captured once as a CUDA graph and replayed (guppy/model/sampler.py). Without, it
    reads the slots filled so far, which on a CPU is less memory to read."""

    def __init__(self, config: ModelConfig, batch_size: int, length: int, *, device, dtype, whole: bool = False):
        hs = config.d_model // config.n_head
        shape = (config.n_layer, batch_size, config.n_head, length, hs)
        # zeros, not empty: touching every page now (0.1 s at the guppy shape, 256 rows) costs far
        # less than page faults later, when each step's new slot of each row and head lands in a
        # page of its own (1.6 s more over 48 steps, measured on a 2-core CPU).
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.valid = torch.zeros(batch_size, length, dtype=torch.bool, device=device)  # (B, slots)
        self.seen = torch.zeros(batch_size, dtype=torch.long, device=device)  # real tokens per row
        self.at = torch.zeros((), dtype=torch.long, device=device)  # the first empty slot
        self.length = 0  # the same, as Python knows it
        self.whole = whole

    def remember(self, real):
        """Mark which of the next T slots hold real tokens; return (B, S) validity of the slots attention reads."""
        T = real.size(1)
        assert self.length + T <= self.valid.size(1), "KV cache is full"
        self.slots = self.at + torch.arange(T, device=real.device)  # (T,) where this step's tokens go
        self.valid.index_copy_(1, self.slots, real)
        return self.valid if self.whole else self.valid[:, :self.length + T]

    def store(self, layer: int, k, v):
        """Write this step's k, v (B, nh, T, hs) of one layer; return those attention reads (B, nh, S, hs)."""
        self.k[layer].index_copy_(2, self.slots, k)
        self.v[layer].index_copy_(2, self.slots, v)
        if self.whole:
            return self.k[layer], self.v[layer]
        end = self.length + k.size(2)
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, real):
        self.length += real.size(1)
        self.at += real.size(1)
        self.seen += real.sum(dim=1)

"""Sampling from a model: batched, with a KV cache, one token per step.

`generate` sees only token ids and yields each step's new tokens as they come, so a chat can
stream them; `complete` is the convenience on top: chats in, reply strings out.

Prompts of different lengths share a batch by left-padding: every row's last prompt token sits
in the same column, so one step appends one column. The model is told where the padding is
(`pad_mask`): nothing attends to it and it does not count as a position, so a prompt gets the
same logits in any batch as alone (tests/test_sampler.py checks it for greedy decoding).

The random numbers that pick the tokens are drawn up front, one per reply and token, in the order of the
prompts as given: a reply depends on its prompt, the seed and its place, never on which rows share its batch,
so a GPU may sample in larger batches than a CPU and still say the same things.

On a GPU the loop never waits for the GPU inside a step: a step's Python issues its kernels while the GPU runs
the steps before. Where one row's tokens are all that is asked (`guppy chat`), the wait is the caller's.
"""

from __future__ import annotations

from typing import Iterator

import torch


def sample_next(logits, *, temperature: float, top_k: int | None, top_p: float | None, uniform=None):
    """logits (B, vocab) -> (B,) next tokens. temperature 0 is argmax (greedy); otherwise uniform (B, 1), numbers
    in [0, 1) on the logits' device, picks each row's token."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:  # keep the k most likely
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, [-1]]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        logits = nucleus(logits, top_p)
    # Inverse-CDF sampling: one uniform number per row picks where it falls in the cumulative
    # probabilities. Same distribution as torch.multinomial, which takes 25 ms a step at
    # 256 x 4096 on a 2-core CPU (this takes ~1 ms).
    cdf = logits.softmax(dim=-1).cumsum(dim=-1)  # (B, vocab)
    return torch.searchsorted(cdf, uniform * cdf[:, -1:], right=True).squeeze(1)


NUCLEUS_FIRST_LOOK = 64  # tokens nucleus() sorts first; a trained model's nucleus is nearly always inside


def nucleus(logits, top_p: float, *, sort_all: bool | None = None):
    """Keep the fewest most likely tokens whose probability adds up to top_p (top-p sampling); the rest -inf.

    Sorting the whole vocabulary for every token sampled was a fifth of `guppy eval` on a CPU. A trained
    model puts top_p of its mass on a few tokens, so the 64 most likely are sorted first (topk), and the
    whole row only where they do not reach top_p (an untrained model is nearly uniform). Either way the
    same tokens are kept: those more likely than the first whose preceding mass reaches top_p. On a GPU every
    row is sorted whole (sort_all, by default where the logits are not on the CPU): the sort is cheap there, and
    finding the rows that need it would wait for the GPU."""
    probs = logits.softmax(dim=-1)
    if logits.device.type != "cpu" if sort_all is None else sort_all:
        return logits.masked_fill(logits < least_kept(*probs.sort(dim=-1, descending=True), logits, top_p), float("-inf"))
    top, order = probs.topk(min(NUCLEUS_FIRST_LOOK, probs.size(-1)), dim=-1)  # (B, k), most likely first
    least = least_kept(top, order, logits, top_p)
    wide = (top.sum(dim=-1) < top_p).nonzero().squeeze(1)  # rows whose nucleus holds more than k tokens
    if len(wide):
        least[wide] = least_kept(*probs[wide].sort(dim=-1, descending=True), logits[wide], top_p)
    return logits.masked_fill(logits < least, float("-inf"))


def least_kept(top, order, logits, top_p: float):
    """(B, 1): the logit of the least likely token of the nucleus, from probabilities sorted most likely
    first (`top`, their token ids `order`). Compared as logits: a near-uniform row rounds many
    probabilities to one float, rarely two logits."""
    before = top.cumsum(dim=-1) - top  # mass of the more likely tokens; 0 for the first
    kept = (before < top_p).sum(dim=-1, keepdim=True)  # (B, 1), at least 1
    return logits.gather(-1, order.gather(-1, kept - 1))


@torch.inference_mode()
def generate(model, prompts: list[list[int]], *, max_new_tokens: int = 48, temperature: float = 0.8,
             top_k: int | None = None, top_p: float | None = None, stop_id: int,
             generator: torch.Generator | None = None, uniforms: torch.Tensor | None = None,
             use_cache: bool = True) -> Iterator[torch.Tensor]:
    """Yield a (B,) LongTensor of new tokens per step until every row has produced `stop_id`
    or `max_new_tokens` steps. A finished row yields `stop_id` from then on; on a GPU, which is not waited
    for, up to done_lag(device) more steps of them may come before the end is seen.

    uniforms (B, max_new_tokens): the numbers that pick each row's tokens (see sample_next); by default drawn
    here from `generator` (a CPU one: the same seed draws the same numbers for a model on any device).

    A prompt is cut from the left only where it leaves the reply less than
    min(max_new_tokens, context / 2) tokens of room (never to make room for a long max_new_tokens
    in a short context: that would cut the question away); the reply stops at the context's end."""
    context = model.config.context
    device = model.lm_head.weight.device
    room = min(max_new_tokens, context // 2)
    prompts = [p[-(context - room):] for p in prompts]
    width = max(len(p) for p in prompts)
    steps = min(max_new_tokens, context - width)
    idx = torch.tensor([[0] * (width - len(p)) + p for p in prompts], device=device)  # (B, width), any pad id
    pad_mask = None  # None when no row is padded: the model takes its fastest path
    if any(len(p) < width for p in prompts):
        pad_mask = torch.tensor([[False] * (width - len(p)) + [True] * len(p) for p in prompts], device=device)
    capture = use_cache and captures_steps(device)
    cache = model.new_kv_cache(len(prompts), width + steps, whole=capture) if use_cache else None
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    if temperature and uniforms is None:
        uniforms = torch.rand(len(prompts), max_new_tokens, generator=generator)
    if temperature:
        uniforms = uniforms.to(device)  # one copy, not one a step
    all_done = AllDone(done_lag(device))
    sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p)
    captured = None

    x, x_mask = idx, pad_mask  # the first step reads the whole prompt, later ones one token
    for step in range(steps):
        uniform = uniforms[:, step:step + 1] if temperature else None
        if captured is not None:
            token = captured(x, uniform)
        else:
            logits, _ = model(x, kv_cache=cache, pad_mask=x_mask, last_only=True)  # (B, 1, vocab)
            token = sample_next(logits[:, -1, :], uniform=uniform, **sampling)
            if capture and step == 1:  # after a first one-token step in the open, which warmed its kernels up
                captured = CapturedStep(model, cache, token[:, None], uniform, sampling)
        token = token.masked_fill(done, stop_id)  # (B,)
        yield token
        done |= token == stop_id
        if all_done(done):
            return
        if use_cache:
            x, x_mask = token[:, None], None
        else:  # recompute everything from the start, as the reference does
            idx = torch.cat([idx, token[:, None]], dim=1)
            if pad_mask is not None:
                pad_mask = torch.cat([pad_mask, torch.ones_like(done)[:, None]], dim=1)
            x, x_mask = idx, pad_mask


def captures_steps(device: torch.device) -> bool:
    """Are decode steps captured as a CUDA graph (CapturedStep)? On NVIDIA GPUs."""
    return device.type == "cuda"


class CapturedStep:
    """One decode step, the model's forward on one token per row and the sampling of the next, captured once as a
    CUDA graph and then replayed. At the guppy shape a step is ~120 small kernels, which Python takes ~3 ms to
    issue one by one and the GPU well under 1 ms to run; a replay issues them all at once. The step reads its
    token and uniform numbers from tensors of its own (copied in) and writes its sample to another (copied out),
    and the cache must be `whole`: no shape changes, nothing read back, so the same kernels serve every step."""

    def __init__(self, model, cache, token, uniform, sampling: dict):
        self.cache, self.token = cache, token.clone()
        self.uniform = None if uniform is None else uniform.clone()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            logits, _ = model(self.token, kv_cache=cache, last_only=True)
            self.sampled = sample_next(logits[:, -1, :], uniform=self.uniform, **sampling)
        cache.length -= 1  # the capture ran the step's Python, which counted a slot, but none of its kernels

    def __call__(self, token, uniform):
        self.token.copy_(token)
        if uniform is not None:
            self.uniform.copy_(uniform)
        self.graph.replay()  # also moves the cache on, on the device
        self.cache.length += 1
        return self.sampled.clone()


def done_lag(device: torch.device) -> int:
    """Steps generate() may run past the one where every row stopped: 0 on a CPU, LAG on a GPU (see AllDone)."""
    return AllDone.LAG if device.type == "cuda" else 0


class AllDone:
    """all_done(done): has every row stopped? With lag 0 (a CPU), asked of this step. With lag n (a GPU), the
    answer for the step n back, copied to the CPU without a wait: asking of this step would make the CPU wait
    for the GPU each step, and then the GPU wait for the CPU's next kernels (a decode step at the guppy shape is
    launch-bound). On a CPU a lag only delays the answer, as tests/test_sampler.py uses it."""

    LAG = 2

    def __init__(self, lag: int):
        self.lag, self.flags = lag, []

    def __call__(self, done: torch.Tensor) -> bool:
        if not self.lag:
            return bool(done.all())
        flag, event = done.all(), None
        if done.is_cuda:
            flag = torch.empty((), dtype=torch.bool, pin_memory=True).copy_(flag, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        self.flags.append((flag, event))
        if len(self.flags) <= self.lag:
            return False
        flag, event = self.flags.pop(0)
        if event is not None:
            event.synchronize()  # that step's flag has arrived; the GPU has the steps since to run meanwhile
        return bool(flag)


def complete(model, tokenizer, chats: list[list[dict]] | list[str], *, max_new_tokens: int = 48,
             temperature: float = 0.8, top_k: int | None = None, top_p: float | None = None,
             seed: int | None = 0, batch_size: int | None = None, use_cache: bool = True) -> list[str]:
    """The reply to each chat (a str is one user message), decoded up to the end of its turn.
    The same seed and inputs give the same replies, in batches of any size; seed None draws from torch's
    global RNG. batch_size: rows sampled together, by default 2048 on an NVIDIA GPU, where a decode step costs
    about as much for many rows as for a few (its KV cache: ~3 GB at the guppy shape), else 256."""
    chats = [[{"role": "user", "content": c}] if isinstance(c, str) else c for c in chats]
    keys = [tuple((m["role"], m["content"]) for m in chat) for chat in chats]
    encoded: dict[tuple, list[int]] = {}  # each distinct chat once: the evaluator asks every prompt 4 times
    for key, chat in zip(keys, chats):
        if key not in encoded:
            encoded[key] = tokenizer.encode_prompt(chat)
    prompts = [encoded[key] for key in keys]
    generator = None if seed is None else torch.Generator().manual_seed(seed)  # on the CPU: see generate
    uniforms = torch.rand(len(prompts), max_new_tokens, generator=generator)  # per reply and token, as given
    if batch_size is None:
        batch_size = 2048 if model.lm_head.weight.device.type == "cuda" else 256
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths together: less padding
    replies = [""] * len(prompts)
    was_training = model.training
    model.eval()  # dropout off while sampling
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            steps = list(generate(model, [prompts[i] for i in rows], max_new_tokens=max_new_tokens,
                                  temperature=temperature, top_k=top_k, top_p=top_p,
                                  stop_id=tokenizer.im_end_id, uniforms=uniforms[rows], use_cache=use_cache))
            tokens = torch.stack(steps, dim=1).tolist() if steps else [[] for _ in rows]  # (B, steps)
            for i, ids in zip(rows, tokens):
                if tokenizer.im_end_id in ids:
                    ids = ids[:ids.index(tokenizer.im_end_id)]
                replies[i] = tokenizer.decode(ids).strip()
    finally:
        model.train(was_training)
    return replies

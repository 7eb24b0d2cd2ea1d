"""The teacher-forced figures of the evaluator: no sampling, so no sampling noise.

    lift        log of the mean chance that an expected word comes next, along the model's own greedy
                reply, after the cue prompts minus after control prompts (prompts of other topics); nats
    bits/byte   held-out loss on the test split's replies, per UTF-8 byte (tokenizer-free)

Any model can be asked about any persona, so nothing here assumes the persona's words are short
in the model's tokenizer: a row that would pass the model's context is cut from the left.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from guppy.spec.language import is_spaced
from guppy.model.sampler import complete

NEUTRAL_PROMPTS = ["say something", "what is that", "ok", "tell me something", "hmm", "what now"]
MAX_BPB_CONVERSATIONS = 1000


def control_prompts(spec, name: str, data) -> list[str]:
    """Prompts that should NOT cue association `name`: test prompts of unrelated topics."""
    topics = set(spec.associations[name].topics)
    if data is None or not topics:
        return NEUTRAL_PROMPTS
    others = sorted({c[0]["content"] for t, convs in data.test_by_topic.items() if t not in topics for c in convs})
    return others[:: max(1, len(others) // 12)][:12] or NEUTRAL_PROMPTS


def right_padded(rows: list[list[int]], pad: int) -> torch.Tensor:
    """Rows of different lengths as one batch; causal attention never looks at the padding after."""
    width = max(map(len, rows))
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows])


@functools.lru_cache(maxsize=64)
def _token_texts(tokenizer) -> tuple[str, ...]:
    return tuple(tokenizer.decode([i]) for i in range(tokenizer.vocab_size))


def tokens_starting_with(tokenizer, words: tuple[str, ...]) -> list[list[int]]:
    """Per word, the tokens whose text starts with it and that are not its own one-token spelling."""
    texts = _token_texts(tokenizer)
    return [[i for i, t in enumerate(texts) if t.startswith(w) and tokenizer.encode(w) != [i]] for w in words]


def rows_at_once(model, on_a_cpu: int) -> int:
    """Rows per forward: 16x `on_a_cpu` on an NVIDIA GPU, where a forward of a few rows is launch-bound and each
    batch waits for its result (guppy's lift: 180 forwards of 32 rows); elsewhere (a CPU, mps) `on_a_cpu`."""
    return 16 * on_a_cpu if model.lm_head.weight.device.type == "cuda" else on_a_cpu


@torch.no_grad()
def log_probs(model, rows: list[list[int]], pad: int, batch_size: int | None = None) -> list[torch.Tensor]:
    """Per row, (len(row), vocab) log-probabilities of the next token after each position, on the CPU.
    Rows go through the model together, right-padded (causal attention never looks at the padding after):
    one forward for many rows, where one per row kept a GPU waiting on Python."""
    device, out, batch_size = model.lm_head.weight.device, [], batch_size or rows_at_once(model, 32)
    for b in range(0, len(rows), batch_size):
        chunk = rows[b:b + batch_size]
        lp = torch.log_softmax(model(right_padded(chunk, pad).to(device))[0].float(), dim=-1).cpu()
        out += [lp[i, :len(r)] for i, r in enumerate(chunk)]
    return out


@torch.no_grad()
def next_token_log_probs(model, rows: list[list[int]], pad: int, batch_size: int | None = None) -> list[torch.Tensor]:
    """Per row, (len(row) - 1,) log-probabilities of the row's own next tokens: [t] is that of row[t + 1]
    after row[:t + 1]. What a word of several tokens needs, picked where the model runs, so that only these
    come back: log_probs' whole rows for guppy's lift were 5,800 x 42 x 3,336 floats (3 GB)."""
    device, out, batch_size = model.lm_head.weight.device, [], batch_size or rows_at_once(model, 32)
    for b in range(0, len(rows), batch_size):
        chunk = rows[b:b + batch_size]
        x = right_padded(chunk, pad).to(device)
        lp = torch.log_softmax(model(x)[0].float(), dim=-1)
        picked = lp[:, :-1].gather(2, x[:, 1:, None])[..., 0].cpu()  # (B, width - 1)
        out += [picked[i, :len(r) - 1] for i, r in enumerate(chunk)]
    return out


def greedy_rows(tokenizer, n_ctx: int, prompt: str, reply: str) -> tuple[list[int], int]:
    """(prompt + the model's greedy reply as ids, `first`): the logits at first + t predict what follows
    reply[:t]. Another persona's prompt can be long in this model's tokens: its end is kept, as the sampler does."""
    context = tokenizer.encode_prompt([{"role": "user", "content": prompt}])[-(n_ctx // 2):]
    return (context + tokenizer.encode(reply))[: n_ctx - 1], len(context) - 1


def longer_words(seq: list[int], first: int, spelled: dict[str, list[list[int]]], mid: str, n_ctx: int):
    """The rows a word of several tokens needs (prompt + reply[:t] + the word), and where each goes: (t, j, k)."""
    rows, where = [], []
    for t, at in enumerate(range(first, len(seq))):
        for j, ids in enumerate(spelled[mid if t else ""]):
            if 1 < len(ids) < n_ctx:  # a word as long as the context cannot come next at all: -inf
                rows.append((seq[: at + 1] + ids)[-n_ctx:])  # cut from the left: the word stays whole
                where.append((t, j, len(ids)))
    return rows, where


def word_log_expectation(logp, seq: list[int], first: int, *, spelled: dict[str, list[list[int]]], mid: str,
                         longer: list[tuple[list[int], torch.Tensor]], where: list[tuple],
                         extra: list[list[int]]) -> float:
    """log of the mean, over the positions t of the model's greedy reply, of P(an expected word comes next
    | prompt, reply[:t]), each word's probability the product over its tokens. The mean (not the
    sum) keeps long and short replies comparable. Mid-reply, a word follows a space (`mid`), unless the
    language is written without spaces (ja, zh); there a token that starts with the word (ごはんが for
    ごはん, `extra`) also counts as the word coming next.

    logp: log_probs of seq, which is all a one-token word needs; `longer` the rows longer_words made for
    the words of several tokens with their next_token_log_probs, `where` their places; spelled[lead]: each
    word's ids."""
    positions = range(first, len(seq))
    per_position = torch.full((len(positions), len(spelled[""])), float("-inf"))
    for lead, rows in (("", slice(0, 1)), (mid, slice(1, None))):  # the reply's first position, then the rest
        one = [(j, ids[0]) for j, ids in enumerate(spelled[lead]) if len(ids) == 1]  # the words of one token
        if one:
            words, tokens = zip(*one)
            per_position[rows, list(words)] = logp[first:len(seq)][rows][:, list(tokens)]
    for (row, next_lp), (t, j, k) in zip(longer, where):
        per_position[t, j] = next_lp[len(row) - k - 1:].sum()  # the word's k tokens, each after what precedes it
    for j, tokens in enumerate(extra):
        if tokens:
            per_position[:, j] = torch.logaddexp(per_position[:, j], torch.logsumexp(logp[list(positions)][:, tokens], 1))
    p_any = torch.logsumexp(per_position, dim=1)  # log P(some expected word next), per position
    return (torch.logsumexp(p_any, 0) - math.log(len(p_any))).item()


def lift(model, tokenizer, spec, prompts_by_assoc: dict[str, list[str]], data, max_reply: int = 16) -> dict[str, float]:
    asked = {name: (prompts_by_assoc[name][:6], control_prompts(spec, name, data)[:6]) for name in spec.associations}
    prompts = sorted({p for cues, controls in asked.values() for p in cues + controls})
    greedy = complete(model, tokenizer, prompts, temperature=0.0, max_new_tokens=max_reply)
    n_ctx, pad = model.config.context, tokenizer.pad_id
    rows = {p: greedy_rows(tokenizer, n_ctx, p, r) for p, r in zip(prompts, greedy)}  # p -> (seq, first)
    logp = dict(zip(prompts, log_probs(model, [seq for seq, _ in rows.values()], pad)))
    mid = " " if is_spaced(spec.language) else ""

    def mean_log_expectation(group: list[str], words: list[str]) -> float:
        spelled = {lead: [tokenizer.encode(lead + w) for w in words] for lead in ("", mid)}  # reply start / mid-reply
        # no spaces: BPE merges a word with what follows (ごはんが), so tokens that start with it count too
        extra = [[]] * len(words) if mid else tokens_starting_with(tokenizer, tuple(words))
        needs = {p: longer_words(*rows[p], spelled, mid, n_ctx) for p in group}
        every = [r for p in group for r in needs[p][0]]
        done = iter(zip(every, next_token_log_probs(model, every, pad)))  # the words of several tokens, all in one go
        return sum(word_log_expectation(logp[p], *rows[p], spelled=spelled, mid=mid, where=needs[p][1],
                                        longer=[next(done) for _ in needs[p][0]], extra=extra)
                   for p in group) / len(group)

    return {name: mean_log_expectation(cues, spec.associations[name].expect)
            - mean_log_expectation(controls, spec.associations[name].expect)
            for name, (cues, controls) in asked.items()}


@torch.no_grad()
def bits_per_byte(model, tokenizer, conversations: list[list[dict]], batch_size: int | None = None) -> float:
    """Held-out loss on reply tokens, in bits per UTF-8 byte of the replies (+1 byte for each end mark)."""
    nats, nbytes, batch_size = 0.0, 0, batch_size or rows_at_once(model, 128)
    encoded = [(tokenizer.encode_chat(c), c) for c in conversations[:MAX_BPB_CONVERSATIONS]]
    encoded = [(ids, mask, c) for (ids, mask), c in encoded if len(ids) <= model.config.context + 1]
    for b in range(0, len(encoded), batch_size):
        chunk = encoded[b:b + batch_size]
        x = right_padded([ids[:-1] for ids, _, _ in chunk], tokenizer.pad_id)
        y = right_padded([[t if m else -1 for t, m in zip(ids[1:], mask[1:])] for ids, mask, _ in chunk], -1)
        logits, _ = model(x.to(model.lm_head.weight.device))
        nats += F.cross_entropy(logits.float().flatten(0, 1), y.flatten().to(logits.device), ignore_index=-1,
                                reduction="sum").item()
        nbytes += sum(len(m["content"].encode()) + 1 for _, _, c in chunk for m in c if m["role"] == "assistant")
    return nats / math.log(2) / max(1, nbytes)

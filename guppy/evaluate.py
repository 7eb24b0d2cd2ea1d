"""How strongly a persona shows in what a model says.

For one model and one persona spec:
    prompts     per association: its probes (never in training) + held-out prompts of its
                topics from the test split (their normalized prompt is never in train)
    hit rate    share of sampled replies containing an expected word, per association
    lift        teacher-forced: log of the expected number of times an expected word comes
                next, along the model's own greedy reply, after the cue prompts minus after
                control prompts (prompts of other topics). Deterministic; in nats.
    style       share of replies keeping each of the spec's style rules
    diversity   distinct-1/2 of the replies; memorized = share copied verbatim from train
    bits/byte   held-out loss on the test split's replies, per UTF-8 byte (tokenizer-free)
The same figures for the training data itself (ceiling) and an untrained model (floor);
the headline `persona_score` is the mean over associations of
    (model hit rate - floor) / (ceiling - floor), clipped to [0, 1].
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from guppy.persona import Persona
from guppy.sampler import complete

NEUTRAL_PROMPTS = ["say something", "what is that", "ok", "tell me something", "hmm", "what now"]
MAX_HELD_OUT = 24  # held-out prompts per association: enough for a stable rate, quick on a CPU
MAX_BPB_CONVERSATIONS = 1000


@dataclass
class EvalData:
    """What the evaluator needs from a dataset: test prompts by topic, and train replies."""

    test_by_topic: dict[str, list[list[dict]]]  # topic -> conversations of the test split
    train_replies: set[str]
    train_by_topic: dict[str, list[str]]  # topic -> assistant replies (the ceiling's material)


def eval_data_from(dd, *, max_per_topic: int = 400) -> EvalData:
    """Reduce a DatasetDict (with a ClassLabel `topic`) to what the evaluator uses."""
    def by_topic(split):
        names = split.features["topic"].names if "topic" in split.features else None
        out: dict[str, list] = {}
        for row in split:
            topic = names[row["topic"]] if names else "all"
            out.setdefault(topic, []).append(row["messages"])
        return out

    train = by_topic(dd["train"])
    return EvalData(
        test_by_topic=by_topic(dd["test"]),
        train_replies={m["content"] for convs in train.values() for c in convs for m in c if m["role"] == "assistant"},
        train_by_topic={t: [c[-1]["content"] for c in convs[:max_per_topic]] for t, convs in train.items()},
    )


def association_prompts(spec: Persona, data: EvalData | None, seed: int) -> dict[str, list[str]]:
    """Per association: probes first, then up to MAX_HELD_OUT held-out prompts of its topics."""
    rng = random.Random(seed)
    out = {}
    for name, assoc in spec.associations.items():
        held_out = []
        if data is not None:
            for topic in assoc.topics or list(spec.topics):
                held_out += [c[0]["content"] for c in data.test_by_topic.get(topic, [])]
        held_out = sorted(set(held_out))
        rng.shuffle(held_out)
        out[name] = list(assoc.probes) + held_out[:MAX_HELD_OUT]
    return out


def control_prompts(spec: Persona, name: str, data: EvalData | None) -> list[str]:
    """Prompts that should NOT cue association `name`: test prompts of unrelated topics."""
    topics = set(spec.associations[name].topics)
    if data is None or not topics:
        return NEUTRAL_PROMPTS
    others = sorted({c[0]["content"] for t, convs in data.test_by_topic.items() if t not in topics for c in convs})
    return others[:: max(1, len(others) // 12)][:12] or NEUTRAL_PROMPTS


def distinct_n(replies: list[str], n: int) -> float:
    grams = [tuple(w[i:i + n]) for w in (r.split() for r in replies) for i in range(len(w) - n + 1)]
    return len(set(grams)) / max(1, len(grams))


def reply_figures(spec: Persona, replies_by_assoc: dict[str, list[str]], train_replies: set[str]) -> dict:
    """Everything measured on a set of replies: hits, style, diversity, memorization."""
    hit = {a: sum(map(spec.associations[a].hit, rs)) / max(1, len(rs)) for a, rs in replies_by_assoc.items()}
    every = [r for rs in replies_by_assoc.values() for r in rs]
    checks = [spec.style.check(r) for r in every]
    style = {rule: sum(c[rule] for c in checks) / max(1, len(checks)) for rule in (checks[0] if checks else {})}
    return {
        "hit_rate": hit,
        "hit_rate_mean": sum(hit.values()) / max(1, len(hit)),
        "style": style,
        "style_all": sum(all(c.values()) for c in checks) / max(1, len(checks)),
        "distinct_1": distinct_n(every, 1),
        "distinct_2": distinct_n(every, 2),
        "memorized": sum(r in train_replies for r in every) / max(1, len(every)),
        "replies": len(every),
    }


def sample_replies(model, tokenizer, prompts_by_assoc: dict[str, list[str]], *, samples: int, seed: int) -> dict[str, list[str]]:
    """`samples` replies to each prompt, one batched call for everything."""
    flat = [(a, p) for a, ps in prompts_by_assoc.items() for p in ps for _ in range(samples)]
    replies = complete(model, tokenizer, [p for _, p in flat], seed=seed, temperature=0.8, top_p=0.95)
    out: dict[str, list[str]] = {a: [] for a in prompts_by_assoc}
    for (a, _), r in zip(flat, replies):
        out[a].append(r)
    return out


@torch.no_grad()
def word_log_expectation(model, tokenizer, prompt: str, words: list[str], max_reply: int = 24) -> float:
    """log sum over reply positions t of P(next word = w | prompt, greedy reply[:t]), averaged over words."""
    context = tokenizer.encode_prompt([{"role": "user", "content": prompt}])
    reply = tokenizer.encode(complete(model, tokenizer, [prompt], temperature=0.0, max_new_tokens=max_reply)[0])
    scores = []
    for w in words:
        rows = [context + reply[:t] + tokenizer.encode((" " if t else "") + w) for t in range(len(reply) + 1)]
        rows = [r[-model.config.context:] for r in rows]
        width = max(map(len, rows))
        n_word = [len(tokenizer.encode((" " if t else "") + w)) for t in range(len(reply) + 1)]
        idx = torch.tensor([r + [tokenizer.pad_id] * (width - len(r)) for r in rows])
        logits, _ = model(idx)
        logp = torch.log_softmax(logits.float(), dim=-1)
        per_pos = []
        for i, (r, k) in enumerate(zip(rows, n_word)):
            positions = range(len(r) - k - 1, len(r) - 1)  # logits at j predict token j+1
            per_pos.append(sum(logp[i, j, r[j + 1]].item() for j in positions))
        scores.append(torch.logsumexp(torch.tensor(per_pos), 0).item())
    return sum(scores) / len(scores)


def lift(model, tokenizer, spec: Persona, prompts_by_assoc: dict[str, list[str]], data: EvalData | None) -> dict[str, float]:
    out = {}
    for name, assoc in spec.associations.items():
        cues = prompts_by_assoc[name][:6]
        controls = control_prompts(spec, name, data)[:6]
        cue = sum(word_log_expectation(model, tokenizer, p, assoc.expect) for p in cues) / len(cues)
        ctrl = sum(word_log_expectation(model, tokenizer, p, assoc.expect) for p in controls) / len(controls)
        out[name] = cue - ctrl
    return out


@torch.no_grad()
def bits_per_byte(model, tokenizer, conversations: list[list[dict]]) -> float:
    """Held-out loss on reply tokens, in bits per UTF-8 byte of the replies (+1 byte for each end mark)."""
    nats, nbytes = 0.0, 0
    for conv in conversations[:MAX_BPB_CONVERSATIONS]:
        ids, mask = tokenizer.encode_chat(conv)
        if len(ids) > model.config.context + 1:
            continue  # longer than the model sees; rare for short chats
        x = torch.tensor([ids[:-1]])
        y = torch.tensor([[t if m else -1 for t, m in zip(ids[1:], mask[1:])]])
        _, loss = model(x, y)
        nats += loss.item() * sum(mask[1:])
        nbytes += sum(len(m["content"].encode()) + 1 for m in conv if m["role"] == "assistant")
    return nats / math.log(2) / max(1, nbytes)


def normalized(model_v: float, floor_v: float, ceiling_v: float) -> float:
    if ceiling_v - floor_v <= 1e-9:
        return 0.0
    return min(1.0, max(0.0, (model_v - floor_v) / (ceiling_v - floor_v)))


def ceiling_replies(spec: Persona, data: EvalData | None) -> dict[str, list[str]]:
    """The training data's own replies on each association's topics: what a perfect student says."""
    if data is None:
        return {a: [] for a in spec.associations}
    return {name: [r for t in (assoc.topics or list(spec.topics)) for r in data.train_by_topic.get(t, [])]
            for name, assoc in spec.associations.items()}


def score_model(model, tokenizer, spec: Persona, data: EvalData | None, *, samples: int, seed: int,
                with_lift: bool = True) -> dict:
    """Every figure for one model on one persona spec (lift and bits/byte only `with_lift`)."""
    model.eval()
    prompts = association_prompts(spec, data, seed)
    replies = sample_replies(model, tokenizer, prompts, samples=samples, seed=seed)
    figures = reply_figures(spec, replies, data.train_replies if data else set())
    if with_lift:
        figures["lift"] = lift(model, tokenizer, spec, prompts, data)
    if with_lift and data is not None:
        test = [c for convs in data.test_by_topic.values() for c in convs]
        figures["bits_per_byte"] = bits_per_byte(model, tokenizer, test)
    figures["examples"] = {a: [{"prompt": p, "reply": r} for p, r in zip(prompts[a], rs[::samples])][:3]
                           for a, rs in replies.items()}
    return figures


def persona_score(model_f: dict, floor_f: dict, ceiling_f: dict) -> tuple[float, dict[str, float]]:
    per = {a: normalized(model_f["hit_rate"][a], floor_f["hit_rate"][a], ceiling_f["hit_rate"][a])
           for a in model_f["hit_rate"]}
    return sum(per.values()) / max(1, len(per)), per

"""How strongly a persona shows in what a model says: the figures, then the two commands that
measure them, `evaluate` (`guppy eval`) and `compare` (`guppy compare`), at the end. They live
here, not beside the writing of their results (guppy/eval/report.py), because a reader who wants
to know what `guppy eval` does opens the module named for it.

For one model and one persona spec:
    prompts     per association: its probes (never in training) + held-out prompts of its
                topics from the test split (their normalized prompt is never in train)
    hit rate    share of sampled replies containing an expected word, per association
    lift        teacher-forced: log of the mean chance that an expected word comes next, along
                the model's own greedy reply, after the cue prompts minus after control prompts
                (prompts of other topics). Deterministic; in nats.
    style       share of replies keeping each of the spec's style rules
    diversity   distinct-1/2 of the replies; memorized = share copied verbatim from train
    bits/byte   held-out loss on the test split's replies, per UTF-8 byte (tokenizer-free)
The same figures for the training data itself (ceiling) and an untrained model (floor);
the headline `persona_score` is the mean over associations of
    (model hit rate - floor) / (ceiling - floor), clipped to [0, 1].
In a language written without spaces the floor's replies are cut to the lengths of the model's
(score_model's `as_long_as`): there a word is found anywhere, and the tokenizer's tokens are
phrases of the persona's own replies (kingyo: 459 of 4,096 hold a food word), so a random reply
hits by its length alone; at equal length the floor measures chance, not verbosity.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from guppy.checks import SEED_MAX, check_number
from guppy.data.reader import load_conversations
from guppy.errors import GuppyError
from guppy.eval.report import report_json, write_matrix, write_report
from guppy.model.checkpoint import load_model
from guppy.model.gpt import GPT
from guppy.model.sampler import complete
from guppy.spec.language import is_spaced, units
from guppy.spec.persona import Persona
from guppy.spec.personas import load_persona
from guppy.store.atomic import check_output, output_lock
from guppy.store.paths import COMPARE_DIR, RunPaths

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


def distinct_n(replies: list[str], n: int, language: str = "en") -> float:
    """Share of distinct n-grams of words (of characters, for a language written without spaces)."""
    grams = [tuple(w[i:i + n]) for w in (units(r, language) for r in replies) for i in range(len(w) - n + 1)]
    return len(set(grams)) / max(1, len(grams))


def reply_figures(spec: Persona, replies_by_assoc: dict[str, list[str]], train_replies: set[str]) -> dict:
    """Everything measured on a set of replies: hits, style, diversity, memorization."""
    hit = {a: sum(map(spec.associations[a].hit, rs)) / max(1, len(rs)) for a, rs in replies_by_assoc.items()}
    every = [r for rs in replies_by_assoc.values() for r in rs]
    checks = [spec.style.check(r) for r in every]
    style = {rule: sum(c[rule] for c in checks) / max(1, len(checks)) for rule in (checks[0] if checks else {})}
    return {
        "hit_rate": hit,
        "style": style,
        "style_all": sum(all(c.values()) for c in checks) / max(1, len(checks)),
        "distinct_1": distinct_n(every, 1, spec.language),
        "distinct_2": distinct_n(every, 2, spec.language),
        "memorized": sum(r in train_replies for r in every) / max(1, len(every)),
    }


def reply_budget(tokenizer, data: EvalData | None, default: int = 48) -> int:
    """Tokens a sampled reply may have: the 95th percentile of the training replies' lengths.

    A trained model ends its turn by itself; an untrained one (the floor) runs to the limit. Even at
    this budget a random reply holds a word found anywhere (Japanese) most of the time (kingyo: 92%),
    so score_model also cuts the floor's replies to the model's lengths (`as_long_as`)."""
    replies = [r for rs in (data.train_by_topic.values() if data else []) for r in rs]
    if not replies:
        return default
    lengths = sorted(len(e.ids) for e in tokenizer.tokenizer.encode_batch(replies, add_special_tokens=False))
    return max(4, lengths[int(0.95 * (len(lengths) - 1))] + 1)  # + 1: the end-of-turn token


def sample_replies(model, tokenizer, prompts_by_assoc: dict[str, list[str]], *, samples: int, seed: int,
                   max_new_tokens: int = 48) -> dict[str, list[str]]:
    """`samples` replies to each prompt, one batched call for everything."""
    flat = [(a, p) for a, ps in prompts_by_assoc.items() for p in ps for _ in range(samples)]
    replies = complete(model, tokenizer, [p for _, p in flat], seed=seed, temperature=0.8, top_p=0.95,
                       max_new_tokens=max_new_tokens)
    out: dict[str, list[str]] = {a: [] for a in prompts_by_assoc}
    for (a, _), r in zip(flat, replies):
        out[a].append(r)
    return out


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


@torch.no_grad()
def word_log_expectation(model, tokenizer, prompt: str, reply: str, words: list[str], *, spaced: bool = True) -> float:
    """log of the mean, over the positions t of the model's greedy `reply`, of P(an expected word comes next
    | prompt, reply[:t]), each word's probability the product over its tokens. The mean (not the
    sum) keeps long and short replies comparable. Mid-reply, a word follows a space, unless the
    language is written without spaces (`spaced` False: ja, zh); there a token that starts with the
    word (ごはんが for ごはん) also counts as the word coming next.

    One forward pass over prompt + reply gives every position's next-token distribution, which
    is all a one-token word needs; only words of several tokens need their own rows."""
    context = tokenizer.encode_prompt([{"role": "user", "content": prompt}])
    reply = tokenizer.encode(reply)
    seq = (context + reply)[: model.config.context - 4]  # room for a word of a few tokens after it
    first = len(context) - 1  # the logits at index first + t predict what follows reply[:t]
    positions = range(first, len(seq))
    mid = " " if spaced else ""
    spelled = {lead: [tokenizer.encode(lead + w) for w in words] for lead in ("", mid)}  # reply start / mid-reply
    logp = torch.log_softmax(model(torch.tensor([seq]))[0][0].float(), dim=-1)
    per_position = torch.full((len(positions), len(words)), float("-inf"))
    longer, where = [], []
    for t, at in enumerate(positions):
        for j, ids in enumerate(spelled[mid if t else ""]):
            if len(ids) == 1:
                per_position[t, j] = logp[at, ids[0]]
            else:
                longer.append(seq[: at + 1] + ids)
                where.append((t, j, len(ids)))
    if longer:
        lp = torch.log_softmax(model(right_padded(longer, tokenizer.pad_id))[0].float(), dim=-1)
        for i, (t, j, k) in enumerate(where):
            row, n = longer[i], len(longer[i])
            at = torch.arange(n - k - 1, n - 1)
            per_position[t, j] = lp[i, at, torch.tensor(row[n - k:])].sum()
    if not spaced:  # no spaces: BPE merges a word with what follows (ごはんが), so count those tokens too
        for j, extra in enumerate(tokens_starting_with(tokenizer, tuple(words))):
            if extra:
                per_position[:, j] = torch.logaddexp(per_position[:, j], torch.logsumexp(logp[list(positions)][:, extra], 1))
    p_any = torch.logsumexp(per_position, dim=1)  # log P(some expected word next), per position
    return (torch.logsumexp(p_any, 0) - math.log(len(p_any))).item()


def lift(model, tokenizer, spec: Persona, prompts_by_assoc: dict[str, list[str]], data: EvalData | None,
         max_reply: int = 16) -> dict[str, float]:
    asked = {name: (prompts_by_assoc[name][:6], control_prompts(spec, name, data)[:6]) for name in spec.associations}
    prompts = sorted({p for cues, controls in asked.values() for p in cues + controls})
    greedy = dict(zip(prompts, complete(model, tokenizer, prompts, temperature=0.0, max_new_tokens=max_reply)))
    spaced = is_spaced(spec.language)

    def mean_log_expectation(group: list[str], words: list[str]) -> float:
        return sum(word_log_expectation(model, tokenizer, p, greedy[p], words, spaced=spaced) for p in group) / len(group)

    return {name: mean_log_expectation(cues, spec.associations[name].expect)
            - mean_log_expectation(controls, spec.associations[name].expect)
            for name, (cues, controls) in asked.items()}


@torch.no_grad()
def bits_per_byte(model, tokenizer, conversations: list[list[dict]], batch_size: int = 128) -> float:
    """Held-out loss on reply tokens, in bits per UTF-8 byte of the replies (+1 byte for each end mark)."""
    nats, nbytes = 0.0, 0
    encoded = [(tokenizer.encode_chat(c), c) for c in conversations[:MAX_BPB_CONVERSATIONS]]
    encoded = [(ids, mask, c) for (ids, mask), c in encoded if len(ids) <= model.config.context + 1]
    for b in range(0, len(encoded), batch_size):
        chunk = encoded[b:b + batch_size]
        x = right_padded([ids[:-1] for ids, _, _ in chunk], tokenizer.pad_id)
        y = right_padded([[t if m else -1 for t, m in zip(ids[1:], mask[1:])] for ids, mask, _ in chunk], -1)
        logits, _ = model(x)
        nats += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-1, reduction="sum").item()
        nbytes += sum(len(m["content"].encode()) + 1 for _, _, c in chunk for m in c if m["role"] == "assistant")
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
                with_lift: bool = True, as_long_as: dict[str, list[int]] | None = None) -> dict:
    """Every figure for one model on one persona spec (lift and bits/byte only `with_lift`).

    as_long_as: for the floor, another model's `reply_chars`; in a language written without spaces,
    each reply is cut to the length of that model's reply to the same prompt and sample."""
    model.eval()
    prompts = association_prompts(spec, data, seed)
    # English keeps 48 tokens and an uncut floor: the yardstick its published scores were measured with.
    budget = 48 if is_spaced(spec.language) else reply_budget(tokenizer, data)
    replies = sample_replies(model, tokenizer, prompts, samples=samples, seed=seed, max_new_tokens=budget)
    if as_long_as is not None and not is_spaced(spec.language):
        # An untrained model never ends its turn, and its random tokens are longer than text's (kingyo: 4.5
        # characters against 3.4): at the token budget it says 94 characters (median) to a trained model's 36.
        replies = {a: [r[:n] for r, n in zip(rs, as_long_as[a])] for a, rs in replies.items()}
    figures = reply_figures(spec, replies, data.train_replies if data else set())
    figures["reply_chars"] = {a: [len(r) for r in rs] for a, rs in replies.items()}
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


# ---------------------------------------------------------------------------------- guppy eval, guppy compare

# Sampled replies per prompt, the same for eval and compare so one model gets one score.
SAMPLES_PER_PROMPT = 4
MAX_SAMPLES = 1000


def untrained_like(model, seed: int):
    """The floor: the same architecture, freshly initialized, never trained."""
    torch.manual_seed(seed)
    return GPT(model.config).eval()


def load_eval_data(paths: RunPaths, persona: str) -> EvalData:
    """The held-out split of the dataset the run was trained on (train_config.json says which)."""
    data = paths.trained_on()
    if not data.exists():
        recorded = " (the dataset train_config.json records)" if data != paths.data else ""
        raise GuppyError(f"{data}: no dataset{recorded}; the evaluator needs its test split "
                         f"(run `guppy generate-data {persona}`, or train again with --data)")
    return eval_data_from(load_conversations(data))


def check_persona(spec, path) -> None:
    if not spec.associations:
        raise GuppyError(f"{path}: the persona has no associations, so there is nothing to measure; "
                         "add some under `associations:`")


def check_eval_options(*, samples: int, seed: int) -> None:
    check_number("--samples", samples, ge=1, le=MAX_SAMPLES)
    check_number("--seed", seed, ge=0, le=SEED_MAX)


def evaluate(*, persona: str, run: Path | None = None, samples: int = SAMPLES_PER_PROMPT, seed: int = 0) -> dict:
    check_eval_options(samples=samples, seed=seed)
    loaded = load_persona(persona)
    spec = loaded.spec
    check_persona(spec, loaded.path)
    paths = RunPaths.for_persona(spec.name, run)
    check_output(paths.eval, "eval")  # before minutes of work: may the old report be replaced?
    with output_lock(paths.eval):  # a second eval of the same run is refused, not interleaved
        return _evaluate(loaded, paths, samples=samples, seed=seed)


def _evaluate(loaded, paths: RunPaths, *, samples: int, seed: int) -> dict:
    spec = loaded.spec
    model, tokenizer, _ = load_model(paths.root)
    data = load_eval_data(paths, spec.name)
    model_f = score_model(model, tokenizer, spec, data, samples=samples, seed=seed)
    floor_f = score_model(untrained_like(model, seed), tokenizer, spec, data, samples=samples, seed=seed,
                          as_long_as=model_f["reply_chars"])
    ceiling_f = reply_figures(spec, ceiling_replies(spec, data), data.train_replies)
    score, per = persona_score(model_f, floor_f, ceiling_f)
    report = report_json(spec, {"model": model_f, "floor": floor_f, "ceiling": ceiling_f}, score=score, per=per,
                         run=paths.root, seed=seed, samples=samples)
    write_report(paths, report)
    return report


def compare(*, personas: list[str], samples: int = SAMPLES_PER_PROMPT, seed: int = 0, out: Path | None = None) -> dict:
    """Score every trained model against every persona spec; the diagonal should dominate."""
    if len(personas) < 2:
        raise GuppyError("compare needs at least two personas, e.g. `guppy compare guppy cat plant`")
    check_eval_options(samples=samples, seed=seed)
    out = Path(out) if out else COMPARE_DIR
    check_output(out, "compare")  # never a stranger's folder, checked before any work
    specs = {p: load_persona(p) for p in personas}
    for loaded in specs.values():
        check_persona(loaded.spec, loaded.path)
    models = {p: load_model(RunPaths.for_persona(specs[p].name).root)[:2] for p in personas}
    data = {p: load_eval_data(RunPaths.for_persona(specs[p].name), specs[p].name) for p in personas}
    matrix: dict[str, dict[str, float]] = {}
    for b in personas:  # the persona spec being measured
        spec = specs[b].spec
        model_b, tok_b = models[b]
        ceiling_f = reply_figures(spec, ceiling_replies(spec, data[b]), set())
        def floor(as_long_as=None):
            return score_model(untrained_like(model_b, seed), tok_b, spec, data[b], samples=samples, seed=seed,
                               with_lift=False, as_long_as=as_long_as)
        floor_f = floor() if is_spaced(spec.language) else None  # unspaced: one floor per model, as long as its replies
        for a in personas:  # the model being asked
            model_f = score_model(*models[a], spec, data[b], samples=samples, seed=seed, with_lift=False)
            floor_a = floor_f or floor(as_long_as=model_f["reply_chars"])
            matrix.setdefault(a, {})[b] = round(persona_score(model_f, floor_a, ceiling_f)[0], 4)
    margins = {a: round(matrix[a][a] - max(v for b, v in matrix[a].items() if b != a), 4) for a in personas}
    result = {"models": personas, "personas": personas, "matrix": matrix, "diagonal_margin": margins, "seed": seed}
    write_matrix(out, result)
    result["out"] = str(out)
    return result

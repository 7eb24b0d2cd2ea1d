"""The figures of how strongly a persona shows in what a model says, for one model, one persona
spec and one sampling seed (`measure`). The commands that run it, `guppy eval` and `guppy compare`,
are guppy/eval/commands.py; how its results read and are written, guppy/eval/report.py.

For one model and one persona spec:
    prompts     per association: its probes (never in training) + held-out prompts of its
                topics from the test split (their normalized prompt is never in train)
    hit rate    share of sampled replies containing an expected word, per association
    lift        teacher-forced, in nats (guppy/eval/likelihood.py)
    style       share of replies keeping each of the spec's style rules
    diversity   distinct-1/2 of the replies; memorized = share copied verbatim from train
    bits/byte   held-out loss on the test split's replies, per UTF-8 byte (guppy/eval/likelihood.py)
    on topic    does a reply answer what was asked (guppy/eval/on_topic.py), over every topic's held-out prompts
    novelty     replies and sentences copied from train (guppy/eval/novelty.py), on the same replies
    turns       the persona and on-topic figures turn by turn in 4-turn chats (guppy/eval/turns.py)
The same figures for the training data itself (ceiling) and an untrained model (floor);
the headline `persona_score` is the mean over associations of
    (model hit rate - floor) / (ceiling - floor), clipped to [0, 1],
with a 95% bootstrap interval over prompts (guppy/eval/confidence.py).
In a language written without spaces the floor's replies are cut to the lengths of the model's
(score_model's `as_long_as`): there a word is found anywhere, and the tokenizer's tokens are
phrases of the persona's own replies (kingyo: 459 of 4,096 hold a food word), so a random reply
hits by its length alone; at equal length the floor measures chance, not verbosity.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from guppy.config import CHAT
from guppy.eval.confidence import mean_ci, normalized, on_topic_ci, persona_score_ci
from guppy.errors import GuppyError
from guppy.spec.language import is_spaced
from guppy.eval.likelihood import bits_per_byte, lift
from guppy.model.gpt import GPT
from guppy.eval.novelty import novelty_figures, training_sentences
from guppy.eval.on_topic import ClassifierElsewhere, held_out_prompts, on_topic_figures, topic_classifier
from guppy.spec.persona import Persona
from guppy.model.sampler import complete
from guppy.eval.replies import ceiling_replies, reply_figures
from guppy.eval.turns import chat_prompts, drift, run_chats, turn_figures

MAX_HELD_OUT = 24  # held-out prompts per association: enough for a stable rate, quick on a CPU
ON_TOPIC_REPLIES = 120  # at least this many replies to every topic's held-out prompts, up to 4 a prompt
# (guppy: 65 topics x 6 prompts, one reply each; a persona of two topics and 30 held-out prompts: 4 each)
CEILING_PER_TOPIC = 60  # test replies per topic for the on-topic and novelty ceilings


@dataclass
class EvalData:
    """What the evaluator needs from a dataset: test prompts by topic, and train replies."""

    test_by_topic: dict[str, list[list[dict]]]  # topic -> conversations of the test split
    train_replies: set[str]
    train_by_topic: dict[str, list[str]]  # topic -> assistant replies (the ceiling's material)
    has_topics: bool = True  # False: no `topic` column, every conversation is topic "all"
    multi_turn: bool = False  # does the train split hold conversations of more than one exchange?
    _sentences: set[str] | None = field(default=None, repr=False)

    @property
    def train_sentences(self) -> set[str]:
        if self._sentences is None:
            self._sentences = training_sentences(self.train_replies)
        return self._sentences

    def to_json(self) -> dict:
        """With the training sentences: splitting 57K replies into them was 0.7 s of a GPU `guppy eval`."""
        return {"test_by_topic": self.test_by_topic, "train_replies": sorted(self.train_replies),
                "train_by_topic": self.train_by_topic, "has_topics": self.has_topics, "multi_turn": self.multi_turn,
                "train_sentences": sorted(self.train_sentences)}

    @classmethod
    def from_json(cls, saved: dict) -> EvalData:
        saved = dict(saved)
        sentences = saved.pop("train_sentences", None)
        return cls(**{**saved, "train_replies": set(saved["train_replies"]),
                      "_sentences": None if sentences is None else set(sentences)})


def eval_data_from(dd, *, max_per_topic: int = 400) -> EvalData:
    """Reduce a DatasetDict (with a ClassLabel `topic`, or none) to what the evaluator uses."""
    has_topics = "topic" in dd["train"].features and "topic" in dd["test"].features

    def by_topic(split):
        names = split.features["topic"].names if has_topics else None
        # Whole columns through Arrow: iterating 57K rows one by one took 8 s, this takes 1.
        table = split.with_format("arrow")[:]  # the rows as selected (a split of a JSONL file is a selection)
        messages = table.column("messages").to_pylist()
        topics = table.column("topic").to_pylist() if names else [None] * len(messages)
        out: dict[str, list] = {}
        for conversation, topic in zip(messages, topics):
            out.setdefault(names[topic] if names else "all", []).append(conversation)
        return out

    train = by_topic(dd["train"])
    return EvalData(
        test_by_topic=by_topic(dd["test"]),
        train_replies={m["content"] for convs in train.values() for c in convs for m in c if m["role"] == "assistant"},
        train_by_topic={t: [c[-1]["content"] for c in convs[:max_per_topic]] for t, convs in train.items()},
        has_topics=has_topics,
        multi_turn=any(len(c) > 2 for convs in train.values() for c in convs),
    )


def association_prompts(spec: Persona, data: EvalData | None, seed: int) -> dict[str, list[str]]:
    """Per association: probes first, then up to MAX_HELD_OUT held-out prompts of its topics."""
    rng = random.Random(seed)
    out = {}
    for name, assoc in spec.associations.items():
        held_out = []
        if data is not None:
            # Data without topics (a JSONL of input/output, say): every held-out prompt may ask for it.
            topics = (assoc.topics or list(spec.topics)) if data.has_topics else list(data.test_by_topic)
            for topic in topics:
                held_out += [c[0]["content"] for c in data.test_by_topic.get(topic, [])]
        held_out = sorted(set(held_out))
        rng.shuffle(held_out)
        out[name] = list(assoc.probes) + held_out[:MAX_HELD_OUT]
        if not out[name]:
            raise GuppyError(f"association '{name}' has no probes and the dataset holds no held-out prompt of its "
                             f"topics ({', '.join(assoc.topics)}); add `probes:` to it, or evaluate on its data")
    return out


def reply_budget(spec: Persona, tokenizer, data: EvalData | None, default: int = 48) -> int:
    """Tokens a sampled reply may have. English keeps 48 tokens (and an uncut floor: the yardstick its
    published scores were measured with); a language written without spaces gets the 95th percentile
    of the training replies' lengths.

    A trained model ends its turn by itself; an untrained one (the floor) runs to the limit. Even at
    this budget a random reply holds a word found anywhere (Japanese) most of the time (kingyo: 92%),
    so score_model also cuts the floor's replies to the model's lengths (`as_long_as`)."""
    replies = [r for rs in (data.train_by_topic.values() if data else []) for r in rs]
    if is_spaced(spec.language) or not replies:
        return default
    lengths = sorted(len(e.ids) for e in tokenizer.tokenizer.encode_batch(replies, add_special_tokens=False))
    return max(4, lengths[int(0.95 * (len(lengths) - 1))] + 1)  # + 1: the end-of-turn token


def sample_grouped(model, tokenizer, prompts: dict[str, list[str]], *, samples: int, seed: int,
                   max_new_tokens: int = 48) -> dict[str, list[str]]:
    """`samples` replies to each prompt of each group (the `samples` of a prompt together), sampled as
    `guppy chat` samples (config.CHAT: what the evaluator measures is what a user sees), one batched call."""
    flat = [(g, p) for g, ps in prompts.items() for p in ps for _ in range(samples)]
    replies = complete(model, tokenizer, [p for _, p in flat], seed=seed, temperature=CHAT.temperature,
                       top_p=CHAT.top_p, max_new_tokens=max_new_tokens)
    out: dict[str, list[str]] = {g: [] for g in prompts}
    for (g, _), r in zip(flat, replies):
        out[g].append(r)
    return out


def per_prompt(flags: list[float], samples: int) -> np.ndarray:
    """The mean of each prompt's `samples` consecutive values: the unit the bootstrap resamples."""
    x = np.asarray(flags, dtype=float)
    return x.reshape(-1, samples).mean(axis=1) if len(x) else x


def score_model(model, tokenizer, spec: Persona, data: EvalData | None, *, samples: int, seed: int,
                with_lift: bool = True, as_long_as: dict[str, list[int]] | None = None,
                budget: int | None = None) -> dict:
    """Every figure for one model on one persona spec (lift and bits/byte only `with_lift`).

    as_long_as: for the floor, another model's `reply_chars`; in a language written without spaces,
    each reply is cut to the length of that model's reply to the same prompt and sample.
    budget: reply_budget(spec, tokenizer, data), when the caller has it already."""
    model.eval()
    prompts = association_prompts(spec, data, seed)
    budget = budget or reply_budget(spec, tokenizer, data)
    replies = sample_grouped(model, tokenizer, prompts, samples=samples, seed=seed, max_new_tokens=budget)
    if as_long_as is not None and not is_spaced(spec.language):
        # An untrained model never ends its turn, and its random tokens are longer than text's (kingyo: 4.5
        # characters against 3.4): at the token budget it says 94 characters (median) to a trained model's 36.
        replies = {a: [r[:n] for r, n in zip(rs, as_long_as[a])] for a, rs in replies.items()}
    figures = reply_figures(spec, replies, data.train_replies if data else set())
    figures["reply_chars"] = {a: [len(r) for r in rs] for a, rs in replies.items()}
    figures["_hits"] = {a: per_prompt([spec.associations[a].hit(r) for r in rs], samples).tolist()
                        for a, rs in replies.items()}  # per prompt, for the bootstrap; not written
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


def answer_figures(reply_fn, spec: Persona, data: EvalData, *, seed: int, classifier=None) -> dict:
    """On topic and novelty, from the replies `reply_fn(prompts) -> replies` gives to the held-out prompts of
    every topic (see ON_TOPIC_REPLIES). reply_fn is a model's sampler, or anything else that answers (the
    evaluator's tests ask a parrot that looks replies up in the training data)."""
    prompts = held_out_prompts(data.test_by_topic, seed)
    samples = min(4, -(-ON_TOPIC_REPLIES // max(1, len(prompts))))
    pairs = [pair for pair in prompts for _ in range(samples)]
    replies = reply_fn([p for _, p in pairs])
    test = ceiling_test(data)
    novelty = novelty_figures(replies, data.train_replies, data.train_sentences)
    novelty["ci"] = mean_ci(1 - per_prompt(novelty.pop("_copied"), samples), seed)  # of novel = 1 - copied
    ceiling_novelty = novelty_figures([r for _, r in test], data.train_replies, data.train_sentences)
    ceiling_novelty.pop("_copied")
    out = {"novelty": {"model": novelty, "ceiling": ceiling_novelty}, "on_topic": None}
    if classifier is not None:
        on_topic = on_topic_figures(classifier, [t for t, _ in pairs], replies, [p for _, p in pairs],
                                    [t for t, _ in test], [r for _, r in test])
        asked, read_as = on_topic.pop("_asked"), on_topic.pop("_read_as")
        on_topic["ci"] = on_topic_ci(asked, read_as, on_topic["ceiling"], seed)
        out["on_topic"] = on_topic
    return out


def ceiling_test(data: EvalData) -> list[tuple[str, str]]:
    """(topic, reply) of the test split, up to CEILING_PER_TOPIC a topic: the on-topic and novelty ceilings' replies."""
    return [(t, c[-1]["content"]) for t, convs in sorted(data.test_by_topic.items()) for c in convs[:CEILING_PER_TOPIC]]


def untrained_like(model, seed: int):
    """The floor: the same architecture, freshly initialized (on the CPU, so a seed gives the same weights
    on any device), never trained; on the model's device."""
    torch.manual_seed(seed)
    return GPT(model.config).to(model.lm_head.weight.device).eval()


FLOOR_KIND = "eval-floor"  # the floor's figures, cached (guppy/store/dataset_cache.py)
PACKAGE = Path(__file__).resolve().parents[1]
FLOOR_CODE = sorted([*(PACKAGE / "eval").glob("*.py"), *(PACKAGE / "model").glob("*.py"), *(PACKAGE / "spec").glob("*.py")])


def floor_figures(model, tokenizer, spec: Persona, data: EvalData, *, samples: int, seed: int, budget: int,
                  as_long_as: dict[str, list[int]]) -> dict:
    """score_model's figures for `untrained_like(model, seed)`, cached: they depend on the model's shape and
    vocabulary, never on its weights, so a second eval of a run, or of a run trained again, reads them (0.6 s of a
    GPU `guppy eval`). The key holds everything they are made of: the shape, the tokenizer, the persona spec, the
    data's prompts and replies, samples, seed, budget, the model's reply lengths where the floor is cut to them
    (a language written without spaces), torch's version and the device, and this code (eval, model, spec)."""
    import hashlib
    import json

    from guppy.store.dataset_cache import cached_file

    device = model.lm_head.weight.device
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([model.config.model_dump(), spec.model_dump(mode="json"), samples, seed, budget,
                         None if is_spaced(spec.language) else as_long_as, torch.__version__, where]).encode())
    h.update(tokenizer.tokenizer.to_str().encode())
    h.update(json.dumps([data.test_by_topic, sorted(data.train_replies)]).encode())
    for f in FLOOR_CODE:
        h.update(f.read_bytes())

    def measured() -> dict:  # as a cached read gives it, to the bit (floats keep their value through JSON)
        return json.loads(json.dumps(score_model(untrained_like(model, seed), tokenizer, spec, data, samples=samples,
                                                 seed=seed, as_long_as=as_long_as, budget=budget)))

    return cached_file(FLOOR_KIND, h.hexdigest(), "floor.json", measured, keep=8, load=json.loads,
                       dump=lambda figures: json.dumps(figures, ensure_ascii=False).encode())


def measure(model, tokenizer, spec: Persona, data: EvalData, *, samples: int, seed: int, elsewhere=None,
            ceiling_elsewhere=None) -> dict:
    """Every figure for one model on one persona, at one sampling seed: model, floor and ceiling.

    elsewhere: a second process (guppy/elsewhere.py) where, while the model samples, the topic classifier is fitted
    and asked; None does it all here. ceiling_elsewhere: where the ceiling's figures (none needs the model) are
    worked out meanwhile; default `elsewhere`."""
    ceiling_elsewhere = ceiling_elsewhere or elsewhere
    ceiling_of = (spec, ceiling_replies(spec, data), data.train_replies)  # reply_figures' arguments
    ceiling = ceiling_elsewhere.submit(reply_figures, *ceiling_of) if ceiling_elsewhere is not None else None
    classifier = (topic_classifier(data.train_by_topic, spec.language, seed, elsewhere=elsewhere)
                  if data.has_topics else None)
    if isinstance(classifier, ClassifierElsewhere):
        classifier.ask_ahead([r for _, r in ceiling_test(data)])
    budget = reply_budget(spec, tokenizer, data)  # the model, its floor and the on-topic replies alike
    model_f = score_model(model, tokenizer, spec, data, samples=samples, seed=seed, budget=budget)
    floor_f = floor_figures(model, tokenizer, spec, data, samples=samples, seed=seed, budget=budget,
                            as_long_as=model_f["reply_chars"])
    ceiling_f = ceiling.result() if ceiling is not None else reply_figures(*ceiling_of)
    score, per = persona_score(model_f, floor_f, ceiling_f)
    ci = persona_score_ci(model_f.pop("_hits"), floor_f.pop("_hits"), ceiling_f["hit_rate"], seed)

    def reply_fn(prompts: list[str]) -> list[str]:
        return complete(model, tokenizer, prompts, seed=seed, temperature=CHAT.temperature, top_p=CHAT.top_p,
                        max_new_tokens=budget)

    answers = answer_figures(reply_fn, spec, data, seed=seed, classifier=classifier)
    per_turn = turn_figures(spec, classifier, run_chats(model, tokenizer, chat_prompts(spec, data.test_by_topic, seed),
                                                         seed=seed))
    turns = {"per_turn": per_turn, "drift": {k: drift(per_turn, k) for k in ("on_topic", "persona")},
             "single_turn_data": not data.multi_turn}
    return {"figures": {"model": model_f, "floor": floor_f, "ceiling": ceiling_f}, "score": score, "per": per,
            "ci": ci, **answers, "turns": turns}
